// A nats-server child process with JetStream and a store directory of our choosing: what
// `nixcas up` runs when no NATS_URL is configured, and what the tests run instead of touching
// whatever may listen on 4222. Waits until the server accepts connections; stops it cleanly.
import { spawn, spawnSync } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { createConnection, createServer } from "node:net";
import { NixcasError } from "../errors.ts";

export interface LocalNatsServer {
  url: string;
  port: number;
  storeDir: string;
  pid: number;
  /** SIGTERM, then SIGKILL after a grace period; resolves once the process is gone. */
  stop(): Promise<void>;
  /** Kills the process at once (a crash), resolves once it is gone. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface LocalNatsServerOptions {
  storeDir: string;
  host?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  binary?: string;
  /** Lines the server prints go here (default: dropped). */
  onLog?: (line: string) => void;
  startTimeoutMs?: number;
}

/** Finds the nats-server binary: $NATS_SERVER_BIN, then PATH, then /usr/sbin (Debian installs it there). */
export function findNatsServerBinary(): string | null {
  const candidates = [process.env.NATS_SERVER_BIN, "nats-server", "/usr/sbin/nats-server", "/usr/local/bin/nats-server"];
  for (const candidate of candidates) {
    if (!candidate) continue;
    const probe = spawnSync(candidate, ["--version"], { encoding: "utf8" });
    if (probe.status === 0) return candidate;
  }
  return null;
}

export async function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

export async function startLocalNatsServer(options: LocalNatsServerOptions): Promise<LocalNatsServer> {
  const binary = options.binary ?? findNatsServerBinary();
  if (!binary) {
    throw new NixcasError(
      "nats.server-missing",
      "nats-server is not installed and NATS_URL is not set. Install it (Debian: `apt-get install nats-server`) " +
        "or point NATS_URL at a running NATS server with JetStream.",
    );
  }
  const host = options.host ?? "127.0.0.1";
  const port = options.port && options.port > 0 ? options.port : await freePort(host);
  await mkdir(options.storeDir, { recursive: true });
  const child = spawn(binary, ["-js", "-sd", options.storeDir, "-a", host, "-p", String(port)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const log = options.onLog ?? (() => {});
  let output = "";
  const collect = (data: Buffer) => {
    const text = data.toString();
    if (output.length < 8192) output += text;
    for (const line of text.split("\n")) if (line) log(line);
  };
  child.stdout!.on("data", collect);
  child.stderr!.on("data", collect);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));

  const deadline = Date.now() + (options.startTimeoutMs ?? 15_000);
  while (!(await accepts(host, port))) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new NixcasError("nats.server-exited", `nats-server exited during start-up (code ${child.exitCode}):\n${output.trim()}`);
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new NixcasError("nats.server-timeout", `nats-server did not accept connections on ${host}:${port} in time:\n${output.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  const terminate = async (signal: NodeJS.Signals, graceMs: number) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(timer);
  };
  return {
    url: `nats://${host}:${port}`,
    port,
    storeDir: options.storeDir,
    pid: child.pid!,
    stop: () => terminate("SIGTERM", 10_000),
    kill: (signal = "SIGKILL") => terminate(signal, 0),
  };
}

function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
