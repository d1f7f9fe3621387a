// A nats-server child process with JetStream and a store directory of our choosing: what
// `nixcas up` runs when no NATS_URL is configured, and what the tests run (through
// tests/helpers/nats-server.ts) instead of touching whatever may listen on 4222.
// Ready means "Server is ready" in its log, which comes after JetStream has recovered its
// streams from the store dir — accepting TCP connections comes earlier than that.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { NixcasError } from "../errors.ts";

export interface NatsServerProcess {
  child: ChildProcess;
  port: number;
  /** Resolves when the process has exited. */
  exited: Promise<void>;
  /** The server's log so far (for error messages and failing assertions). */
  log(): string;
  /** Sends `signal`, then SIGKILL after `graceMs`; resolves once the process is gone. */
  terminate(signal: NodeJS.Signals, graceMs: number): Promise<void>;
}

export interface LaunchOptions {
  binary?: string;
  /** JetStream store directory; null runs without JetStream. */
  storeDir: string | null;
  host?: string;
  /** -1 (default): the server picks a free port and we read it from its log. */
  port?: number;
  args?: string[];
  onLog?: (line: string) => void;
  readyTimeoutMs?: number;
}

/** Finds the nats-server binary: $NATS_SERVER_BIN, then PATH, then where Debian and others install it. */
export function findNatsServerBinary(): string | null {
  const candidates = [process.env.NATS_SERVER_BIN, "nats-server", "/usr/sbin/nats-server", "/usr/local/bin/nats-server"];
  for (const candidate of candidates) {
    if (candidate && spawnSync(candidate, ["--version"]).status === 0) return candidate;
  }
  return null;
}

export async function launchNatsServer(options: LaunchOptions): Promise<NatsServerProcess> {
  const binary = options.binary ?? findNatsServerBinary();
  if (!binary) {
    throw new NixcasError(
      "nats.server-missing",
      "nats-server is not installed and NATS_URL is not set. Install it (Debian: `apt-get install nats-server`) " +
        "or point NATS_URL at a running NATS server with JetStream.",
    );
  }
  if (options.storeDir) await mkdir(options.storeDir, { recursive: true });
  const host = options.host ?? "127.0.0.1";
  const args = ["-a", host, "-p", String(options.port ?? -1), ...(options.storeDir ? ["-js", "-sd", options.storeDir] : []), ...(options.args ?? [])];
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let logText = "";
  let port = options.port ?? -1;
  const timeoutMs = options.readyTimeoutMs ?? 15_000;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new NixcasError("nats.server-timeout", `nats-server did not become ready within ${timeoutMs} ms:\n${logText.trim()}`));
    }, timeoutMs);
    const onData = (data: Buffer) => {
      const text = data.toString("utf8");
      if (logText.length < 1 << 20) logText += text;
      for (const line of text.split("\n")) if (line) options.onLog?.(line);
      const listening = /Listening for client connections on [^\s]*:(\d+)/.exec(logText);
      if (listening) port = Number(listening[1]);
      if (/Server is ready/.test(logText) && port > 0) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(new NixcasError("nats.server-spawn", `cannot start ${binary}: ${err.message}`));
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new NixcasError("nats.server-exited", `nats-server exited during start-up (code ${code}, signal ${signal}):\n${logText.trim()}`));
    });
  });
  return {
    child,
    port,
    exited,
    log: () => logText,
    async terminate(signal, graceMs) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

export interface LocalNatsServer {
  url: string;
  port: number;
  storeDir: string;
  /** SIGTERM (JetStream flushes), then SIGKILL after 10 s; resolves once the process is gone. */
  stop(): Promise<void>;
}

/** The server `nixcas up` runs: JetStream, loopback only, a free port. */
export async function startLocalNatsServer(options: { storeDir: string; onLog?: (line: string) => void }): Promise<LocalNatsServer> {
  const server = await launchNatsServer({ storeDir: options.storeDir, onLog: options.onLog });
  return {
    url: `nats://127.0.0.1:${server.port}`,
    port: server.port,
    storeDir: options.storeDir,
    stop: () => server.terminate("SIGTERM", 10_000),
  };
}
