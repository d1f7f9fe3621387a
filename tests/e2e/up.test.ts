// `nixcas up` as a user runs it (a child process, its own local nats-server and data dir) under
// the faults of issue 6 defect 3: its nats-server killed (restarted on the same port and store,
// or, when it keeps dying, `up` exits 1 with one line), `up` itself killed (its nats-server goes
// with it, and the next `up` takes over the stale lock), a second `up` on the same data dir
// (refused, naming the holder), SIGTERM (everything ends within seconds), a port in use (one line).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { until } from "../helpers/pipeline.ts";
import { cleanUpProcesses, gatewayOf, newDataDir, startUp, type Up } from "../helpers/up-process.ts";

after(cleanUpProcesses);

/** The pid of the local nats-server `up` runs now (from its log: started / restarted). */
function natsServerPid(up: Up): number {
  const lines = up.logs().filter((l) => l.msg === "started a local nats-server" || l.msg === "restarted the local nats-server");
  assert.ok(lines.length > 0, `no nats-server pid in the log:\n${up.stderr()}`);
  return lines.at(-1)!.pid as number;
}

/** A process that is gone or a zombie (exited, not yet reaped by whoever adopted it). */
function isGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

async function status(url: string): Promise<number> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

/** Waits for the exit and returns its code and how long it took from now. */
async function exitWithin(up: Up, ms: number): Promise<{ code: number | string; ms: number }> {
  const t0 = Date.now();
  const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), ms).unref());
  const code = await Promise.race([up.exited, timeout]);
  assert.notEqual(code, "timeout", `nixcas up did not exit within ${ms} ms:\n${up.stderr().slice(-3000)}`);
  return { code, ms: Date.now() - t0 };
}

test("up restarts its killed nats-server on the same port and store; readiness follows", async () => {
  const up = startUp(await newDataDir());
  const url = await gatewayOf(up);
  await until("/readyz 200", async () => (await status(`${url}/readyz`)) === 200, 20_000, 200);
  const first = natsServerPid(up);
  process.kill(first, "SIGKILL");

  // The restart waits 250 ms and the server then recovers JetStream: the probe sees the gap.
  await until("/readyz 503 after the kill", async () => (await status(`${url}/readyz`)) === 503, 10_000, 50);
  assert.equal(await status(`${url}/healthz`), 200, "liveness is not readiness: the process still answers");
  await until("a restarted nats-server", () => natsServerPid(up) !== first, 20_000, 100);
  assert.ok(isGone(first));
  await until("/readyz 200 again", async () => (await status(`${url}/readyz`)) === 200, 30_000, 200);
  assert.match(up.stdout(), /NATS: +nats:\/\/127\.0\.0\.1:(\d+)/);

  // The data dir is locked: a second up refuses, naming the holder.
  const second = startUp(up.dataDir);
  const refused = await exitWithin(second, 60_000);
  assert.equal(refused.code, 1);
  assert.match(second.stderr(), new RegExp(`nixcas: the data dir .* is in use by another nixcas up \\(pid ${up.child.pid}[ ,]`));

  // Its gateway port is taken: one clear line, exit 1, nothing left running.
  const clash = startUp(await newDataDir(), { NIXCAS_HTTP_PORT: new URL(url).port });
  const clashed = await exitWithin(clash, 60_000);
  assert.equal(clashed.code, 1);
  const ours = clash.stderr().split("\n").filter((l) => l.startsWith("nixcas:"));
  assert.deepEqual(ours, [`nixcas: cannot listen on 127.0.0.1:${new URL(url).port} (NIXCAS_HTTP_PORT): the port is in use by another process`]);
  assert.doesNotMatch(clash.stderr(), /internal error|\n\s+at /, "no stack trace");
  assert.ok(isGone(natsServerPid(clash)), "the nats-server it had started is stopped");

  // SIGTERM ends everything within seconds, releases the lock and stops the nats-server.
  const serverPid = natsServerPid(up);
  up.child.kill("SIGTERM");
  const stopped = await exitWithin(up, 15_000);
  assert.equal(stopped.code, 0);
  assert.ok(stopped.ms < 10_000, `SIGTERM took ${stopped.ms} ms`);
  assert.ok(isGone(serverPid), "nats-server stopped");
  assert.equal(existsSync(join(up.dataDir, "nixcas-up.lock")), false, "lock released");
});

test("a killed up takes its nats-server with it, and the next up takes over the stale lock", async () => {
  const dataDir = await newDataDir();
  const up = startUp(dataDir);
  await gatewayOf(up);
  const serverPid = natsServerPid(up);
  up.child.kill("SIGKILL");
  await up.exited;
  await until("the orphaned nats-server to die", () => isGone(serverPid), 5_000, 50);
  assert.ok(existsSync(join(dataDir, "nixcas-up.lock")), "the killed up could not remove its lock");

  const next = startUp(dataDir);
  const url = await gatewayOf(next);
  assert.ok(next.logs().some((l) => l.msg === "took over the lock of a nixcas up that is gone"));
  await until("/readyz 200", async () => (await status(`${url}/readyz`)) === 200, 20_000, 200);

  // Ctrl-C in a terminal: SIGINT to the whole process group. Only `up` may get it (its
  // nats-server must outlive the services' stop), so stopping is quiet: no warnings.
  const linesBefore = next.logs().length;
  process.kill(-next.child.pid!, "SIGINT");
  const stopped = await exitWithin(next, 15_000);
  assert.equal(stopped.code, 0);
  assert.ok(stopped.ms < 10_000, `Ctrl-C took ${stopped.ms} ms`);
  const whileStopping = next.logs().slice(linesBefore);
  assert.ok(whileStopping.some((l) => l.msg === "stopping"));
  assert.deepEqual(whileStopping.filter((l) => l.level === "warn" || l.level === "error"), []);
});

test("a nats-server that keeps dying: up stops everything and exits 1 with one line", async () => {
  const up = startUp(await newDataDir());
  await gatewayOf(up);
  const killed = new Set<number>();
  // MAX_RESTARTS (3) restarts are allowed within a minute; the 4th exit is given up.
  while (up.child.exitCode === null && killed.size < 6) {
    await until("a nats-server not yet killed", () => !killed.has(natsServerPid(up)) || up.child.exitCode !== null, 30_000, 50);
    if (up.child.exitCode !== null) break;
    const pid = natsServerPid(up);
    killed.add(pid);
    process.kill(pid, "SIGKILL");
    await until("its exit to be noticed", () => up.logs().filter((l) => l.msg === "the local nats-server exited").length >= killed.size, 10_000, 50);
  }
  const { code } = await exitWithin(up, 20_000);
  assert.equal(code, 1);
  assert.equal(killed.size, 4);
  const ours = up.stderr().split("\n").filter((l) => l.startsWith("nixcas:"));
  assert.deepEqual(ours, ["nixcas: the local nats-server exited 4 times within 60 s (last: killed by SIGKILL); not restarting it again"]);
  for (const pid of killed) assert.ok(isGone(pid));
});
