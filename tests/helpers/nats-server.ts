// A private nats-server for one test file: its own port (never the 4222 a developer may run)
// and its own JetStream store dir, started fresh and stopped by the test. `kill()` simulates a
// crash (SIGKILL: nothing flushed); `restart()` comes back on the same port and store dir, so
// connected clients reconnect by themselves and durable state can be checked.
import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const NATS_SERVER_BINARY = process.env.NIXCAS_TEST_NATS_SERVER ?? "/usr/sbin/nats-server";

export interface NatsServerOptions {
  jetstream?: boolean;
  /** Reuse a store dir (e.g. across two servers in one test); otherwise a temp dir removed on stop. */
  storeDir?: string;
  /** A fixed port; otherwise the server picks a free one (`-p -1`). */
  port?: number;
  /** Extra command-line arguments (e.g. `--auth token`). */
  args?: string[];
}

export interface NatsServer {
  url: string;
  port: number;
  storeDir: string;
  /** Graceful stop (SIGTERM, then SIGKILL after 5 s); removes the store dir if it was a temp one. */
  stop(): Promise<void>;
  /** A crash: the process is killed (SIGKILL by default) and nothing else happens. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the server again on the same port and store dir (stops it first if it runs). */
  restart(): Promise<void>;
  /** The server's log so far (for failing assertions). */
  log(): string;
}

const READY_TIMEOUT_MS = 15_000;

// Children still running when the test process exits (a failed test that skipped its `after`,
// or a run interrupted by a signal) would outlive it: kill them synchronously, remove temp dirs.
const running = new Set<ChildProcess>();
const tempDirs = new Set<string>();
const cleanUp = () => {
  for (const child of running) child.kill("SIGKILL");
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
};
process.on("exit", cleanUp);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    cleanUp();
    process.kill(process.pid, signal); // the default action, now that this listener is gone
  });
}

export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const jetstream = options.jetstream ?? true;
  const ownStoreDir = options.storeDir === undefined;
  const storeDir = options.storeDir ?? (await mkdtemp(join(tmpdir(), "nixcas-nats-")));
  if (ownStoreDir) tempDirs.add(storeDir);
  let port = options.port ?? -1;
  let child: ChildProcess | null = null;
  let logText = "";
  let stopped = false;

  const launch = async (): Promise<void> => {
    const args = ["-a", "127.0.0.1", "-p", String(port), ...(jetstream ? ["-js", "-sd", storeDir] : []), ...(options.args ?? [])];
    const proc = spawn(NATS_SERVER_BINARY, args, { stdio: ["ignore", "pipe", "pipe"] });
    child = proc;
    running.add(proc);
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.once("exit", () => running.delete(proc));
    (proc as ChildProcess & { exitedPromise?: Promise<void> }).exitedPromise = exited;
    await new Promise<void>((resolve, reject) => {
      let buffered = "";
      const timer = setTimeout(() => {
        proc.kill("SIGKILL");
        reject(new Error(`nats-server did not become ready within ${READY_TIMEOUT_MS} ms:\n${logText}`));
      }, READY_TIMEOUT_MS);
      const onData = (data: Buffer) => {
        const text = data.toString("utf8");
        logText += text;
        buffered += text;
        const listening = /Listening for client connections on [^\s]*:(\d+)/.exec(buffered);
        if (listening) port = Number(listening[1]);
        // "Server is ready" comes after JetStream has recovered its streams from the store dir.
        if (/Server is ready/.test(buffered) && port > 0) {
          clearTimeout(timer);
          resolve();
        }
      };
      proc.stdout!.on("data", onData);
      proc.stderr!.on("data", onData);
      proc.once("error", (err) => {
        clearTimeout(timer);
        reject(new Error(`cannot start ${NATS_SERVER_BINARY}: ${err.message}`));
      });
      proc.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`nats-server exited during start (code ${code}, signal ${signal}):\n${logText}`));
      });
    });
  };

  const terminate = async (signal: NodeJS.Signals): Promise<void> => {
    const proc = child as (ChildProcess & { exitedPromise?: Promise<void> }) | null;
    child = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill("SIGKILL"), 5_000);
    await proc.exitedPromise;
    clearTimeout(timer);
  };

  await launch();
  const server: NatsServer = {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    async stop() {
      if (stopped) return;
      stopped = true;
      await terminate("SIGTERM");
      if (ownStoreDir) {
        await rm(storeDir, { recursive: true, force: true });
        tempDirs.delete(storeDir);
      }
    },
    async kill(signal = "SIGKILL") {
      await terminate(signal);
    },
    async restart() {
      if (stopped) throw new Error("nats-server was stopped for good; start a new one");
      await terminate("SIGTERM");
      await launch();
    },
    log: () => logText,
  };
  return server;
}
