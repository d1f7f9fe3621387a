// A private nats-server for one test file: its own port (never the 4222 a developer may run)
// and its own JetStream store dir, started fresh and stopped by the test. `kill()` simulates a
// crash (SIGKILL: nothing flushed); `restart()` comes back on the same port and store dir, so
// connected clients reconnect by themselves and durable state can be checked.
import type { ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { launchNatsServer, type NatsServerProcess } from "../../shared/nats/local-server.ts";
import { ensureNatsAuthDir, writeServerConfigWithAuth, type NatsAuthDir } from "../../shared/nats/nats-auth-dir.ts";

export const NATS_SERVER_BINARY = process.env.NIXCAS_TEST_NATS_SERVER ?? "/usr/sbin/nats-server";

export interface NatsServerOptions {
  jetstream?: boolean;
  /** Reuse a store dir (e.g. across two servers in one test); otherwise a temp dir removed on stop. */
  storeDir?: string;
  /** A fixed port; otherwise the server picks a free one (`-p -1`). */
  port?: number;
  /** Extra command-line arguments (e.g. `--auth token`). */
  args?: string[];
  /**
   * Decentralized JWT auth as `nixcas up` runs it: keys, auth.conf and a creds file per role in
   * a temp dir (`auth` of the server); anonymous clients are refused.
   */
  jwtAuth?: boolean;
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
  /** With `jwtAuth`: the auth directory (keys, creds of every role); else null. */
  auth: NatsAuthDir | null;
}

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
  let stopped = false;
  let auth: NatsAuthDir | null = null;
  const args = [...(options.args ?? [])];
  if (options.jwtAuth) {
    const authRoot = await mkdtemp(join(tmpdir(), "nixcas-nats-auth-"));
    tempDirs.add(authRoot);
    auth = await ensureNatsAuthDir(join(authRoot, "nats-auth"));
    const configFile = join(authRoot, "nats-server.conf");
    await writeServerConfigWithAuth(configFile, auth);
    args.push("-c", configFile);
  }

  let current: NatsServerProcess | null = null;
  let earlierLogs = "";

  const launch = async (): Promise<void> => {
    const proc = await launchNatsServer({
      binary: NATS_SERVER_BINARY,
      storeDir: jetstream ? storeDir : null,
      port,
      args,
    });
    current = proc;
    port = proc.port;
    running.add(proc.child);
    proc.child.once("exit", () => running.delete(proc.child));
  };

  const terminate = async (signal: NodeJS.Signals): Promise<void> => {
    const proc = current;
    current = null;
    if (!proc) return;
    earlierLogs += proc.log();
    await proc.terminate(signal, signal === "SIGKILL" ? 0 : 5_000);
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
      if (auth) {
        const authRoot = join(auth.dir, "..");
        await rm(authRoot, { recursive: true, force: true });
        tempDirs.delete(authRoot);
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
    log: () => earlierLogs + (current?.log() ?? ""),
    auth,
  };
  return server;
}
