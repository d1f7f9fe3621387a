// A nats-server child process with JetStream and a store directory of our choosing: what
// `nixcas up` runs when no NATS_URL is configured, and what the tests run (through
// tests/helpers/nats-server.ts) instead of touching whatever may listen on 4222.
// Ready means "Server is ready" in its log, which comes after JetStream has recovered its
// streams from the store dir — accepting TCP connections comes earlier than that.
//
// The child never outlives us: it is started through util-linux `setpriv --pdeathsig SIGKILL`
// (the kernel kills it when its parent dies, even by SIGKILL; prctl(2) PR_SET_PDEATHSIG), and in
// its own process group, so a Ctrl-C in a terminal reaches only us and we stop it last, after
// the services let go of it (otherwise it dies first and every client floods the log with
// reconnect and pull errors while stopping). The parent-death signal follows the thread that
// spawned the child: launch from the main thread, not from a worker that may end first.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { NixcasError } from "../errors.ts";
import type { Logger } from "../log.ts";

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
  /** The server's environment (default ours): a config file may read variables, e.g. `$SERVER_NAME`. */
  env?: NodeJS.ProcessEnv;
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

let setprivBinary: string | null | undefined;

/** util-linux `setpriv` when it can set a parent-death signal (Debian always has it), else null. */
function findSetpriv(): string | null {
  if (setprivBinary === undefined) {
    setprivBinary = null;
    for (const candidate of ["setpriv", "/usr/bin/setpriv", "/bin/setpriv"]) {
      if (spawnSync(candidate, ["--pdeathsig", "SIGKILL", "--", "true"]).status === 0) {
        setprivBinary = candidate;
        break;
      }
    }
  }
  return setprivBinary;
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
  const setpriv = findSetpriv();
  const [command, commandArgs] = setpriv ? [setpriv, ["--pdeathsig", "SIGKILL", "--", binary, ...args]] : [binary, args];
  const child = spawn(command, commandArgs, { stdio: ["ignore", "pipe", "pipe"], detached: true, env: options.env ?? process.env });
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
      const portTaken = /address already in use/i.test(logText);
      reject(
        portTaken
          ? new NixcasError("nats.port-in-use", `nats-server cannot listen on ${host}:${port}: the port is in use by another process`)
          : new NixcasError("nats.server-exited", `nats-server exited during start-up (code ${code}, signal ${signal}):\n${logText.trim()}`),
      );
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
  /** The running server's process id (changes when it was restarted). */
  pid(): number | undefined;
  /** SIGTERM (JetStream flushes), then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs: number): Promise<void>;
}

export interface LocalNatsServerOptions {
  storeDir: string;
  /** A config file for `-c` (nixcas up's: the auth include, shared/nats/nats-auth-dir.ts). */
  configFile?: string;
  logger: Logger;
  /** Called once when the server keeps dying and is not restarted again. */
  onGiveUp(err: NixcasError): void;
}

/** More exits than this within RESTART_WINDOW_MS and the server is given up. */
const MAX_RESTARTS = 3;
const RESTART_WINDOW_MS = 60_000;
/** Log lines of a dead server shown in the warning about its exit. */
const LOG_TAIL_LINES = 10;

/**
 * The server `nixcas up` runs: JetStream, loopback only, a free port, the auth of its config
 * file (no anonymous clients: docs/nats-notes.md, "NATS authentication") — supervised: when it exits
 * unexpectedly it is started again on the same port and store dir (clients reconnect by
 * themselves and JetStream recovers its streams), unless it exited more than MAX_RESTARTS times
 * within RESTART_WINDOW_MS: then `onGiveUp` is called and the caller should exit.
 */
export async function startLocalNatsServer(options: LocalNatsServerOptions): Promise<LocalNatsServer> {
  const { storeDir, logger } = options;
  const args = options.configFile ? ["-c", options.configFile] : [];
  // The server's own warnings and errors (out of storage, resource limits, a damaged store) are
  // what an operator must see; its routine lines stay at debug.
  const onLog = (line: string) => {
    if (/ \[(ERR|FTL)\] /.test(line)) logger.error("nats-server", { line });
    else if (/ \[WRN\] /.test(line)) logger.warn("nats-server", { line });
    else logger.debug("nats-server", { line });
  };
  if (!findSetpriv()) logger.warn("util-linux setpriv not found: if this process is killed (SIGKILL), its nats-server keeps running");
  let current = await launchNatsServer({ storeDir, args, onLog });
  const port = current.port;
  let stopping = false;
  let restarting: Promise<void> | null = null;
  const exits: number[] = [];

  const restart = async (dead: NatsServerProcess): Promise<void> => {
    let lastExit = describeExit(dead.child);
    logger.warn("the local nats-server exited", { exit: lastExit, log: tail(dead.log()) });
    while (!stopping) {
      const now = Date.now();
      exits.push(now);
      while (exits.length > 0 && exits[0]! < now - RESTART_WINDOW_MS) exits.shift();
      if (exits.length > MAX_RESTARTS) {
        options.onGiveUp(
          new NixcasError("nats.server-died", `the local nats-server exited ${exits.length} times within ${RESTART_WINDOW_MS / 1000} s (last: ${lastExit}); not restarting it again`),
        );
        return;
      }
      logger.warn("restarting the local nats-server on the same port and store", { attempt: exits.length });
      await new Promise((r) => setTimeout(r, 250 * 2 ** (exits.length - 1)));
      if (stopping) return;
      try {
        const proc = await launchNatsServer({ storeDir, port, args, onLog });
        current = proc;
        logger.info("restarted the local nats-server", { pid: proc.child.pid, port });
        supervise(proc);
        return;
      } catch (err) {
        lastExit = (err as Error).message.split("\n")[0]!;
        logger.warn("the local nats-server did not start again", { error: (err as Error).message });
      }
    }
  };
  const supervise = (proc: NatsServerProcess) => {
    void proc.exited.then(() => {
      if (stopping || proc !== current) return;
      restarting = restart(proc).finally(() => {
        restarting = null;
      });
    });
  };
  supervise(current);

  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    pid: () => current.child.pid,
    async stop(graceMs) {
      stopping = true;
      await restarting; // a launch in progress finishes (or fails) first, so its process is stopped too
      await current.terminate("SIGTERM", graceMs);
    },
  };
}

function describeExit(child: ChildProcess): string {
  return child.signalCode ? `killed by ${child.signalCode}` : `exit code ${child.exitCode}`;
}

function tail(log: string): string {
  return log.trim().split("\n").slice(-LOG_TAIL_LINES).join("\n");
}
