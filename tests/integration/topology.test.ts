// The JetStream topology against a real nats-server: created once, idempotent, updated where
// safe, refused (and left untouched) where an existing stream would break an invariant.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { DiscardPolicy, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { nanos, type NatsConnection } from "@nats-io/nats-core";
import { connectNats } from "../../shared/nats/connect.ts";
import { ensureTopology, KV_BUCKETS, openTopology, STREAMS, type TopologyAction } from "../../shared/nats/topology.ts";
import { NixcasError } from "../../shared/errors.ts";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.ts";

const run = promisify(execFile);
const NODE = new URL("../../node_modules/.bin/node", import.meta.url).pathname;
const CLI = new URL("../../cli/nixcas.ts", import.meta.url).pathname;

async function fresh(t: { after(fn: () => Promise<void>): void }): Promise<{ server: NatsServer; nc: NatsConnection }> {
  const server = await startNatsServer();
  const nc = await connectNats({ servers: [server.url], name: "topology-test" });
  t.after(async () => {
    await nc.close();
    await server.stop();
  });
  return { server, nc };
}

test("ensureTopology creates every stream, bucket and the object store, then finds them unchanged", async (t) => {
  const { nc } = await fresh(t);
  const first: TopologyAction[] = [];
  const topo = await ensureTopology(nc, { onAction: (a) => first.push(a) });
  assert.deepEqual(
    first.map((a) => `${a.kind}:${a.name}:${a.action}`),
    [
      ...Object.values(STREAMS).map((s) => `stream:${s}:created`),
      ...KV_BUCKETS.map((b) => `kv:${b}:created`),
      "object-store:staging:created",
    ],
  );
  const second: TopologyAction[] = [];
  await ensureTopology(nc, { onAction: (a) => second.push(a) });
  assert.equal(second.length, first.length);
  assert.ok(second.every((a) => a.action === "unchanged"), JSON.stringify(second.filter((a) => a.action !== "unchanged")));

  const blocks = (await topo.jsm.streams.info("BLOCKS")).config;
  assert.deepEqual(blocks.subjects, ["CID.sha256.>"]);
  assert.equal(blocks.max_msgs_per_subject, 1);
  assert.equal(blocks.discard, DiscardPolicy.New);
  assert.equal(blocks.discard_new_per_subject, true);
  assert.equal(blocks.allow_direct, true);
  assert.equal(blocks.storage, StorageType.File);
  assert.equal(blocks.duplicate_window, nanos(120_000));
  assert.equal(blocks.max_age, 0);
  for (const name of ["INGEST", "INDEX"]) assert.equal((await topo.jsm.streams.info(name)).config.retention, RetentionPolicy.Workqueue);
  assert.equal((await topo.jsm.streams.info("DEADLETTER")).config.max_age, nanos(30 * 86_400_000));
  assert.equal((await topo.jsm.streams.info("EVENTS")).config.max_age, nanos(86_400_000));
  assert.equal((await topo.jsm.streams.info("KV_uploads")).config.max_age, nanos(7 * 86_400_000));
  assert.equal((await topo.jsm.streams.info("KV_paths")).config.max_msgs_per_subject, 1);
  assert.equal((await topo.jsm.streams.info("OBJ_staging")).config.max_age, nanos(86_400_000));

  // The handles work: a KV round trip and an object.
  await topo.kv.nars.put("k", new TextEncoder().encode("v"));
  assert.equal(new TextDecoder().decode((await topo.kv.nars.get("k"))!.value), "v");
  await topo.staging.putBlob({ name: "x" }, new Uint8Array([1, 2, 3]));
  assert.deepEqual([...(await topo.staging.getBlob("x"))!], [1, 2, 3]);
});

test("openTopology names what is missing, and opens a complete topology", async (t) => {
  const { nc } = await fresh(t);
  await assert.rejects(openTopology(nc), (err: NixcasError) => {
    assert.equal(err.code, "topology.missing");
    assert.match(err.message, /stream BLOCKS/);
    assert.match(err.message, /KV bucket paths/);
    assert.match(err.message, /nixcas setup/);
    return true;
  });
  await ensureTopology(nc);
  const topo = await openTopology(nc);
  await topo.kv.paths.put("a", new Uint8Array([7]));
  assert.deepEqual([...(await topo.kv.paths.get("a"))!.value], [7]);
});

test("BLOCKS with discard 'old' is refused, not rewritten", async (t) => {
  const { nc } = await fresh(t);
  const topo = await ensureTopology(nc);
  await topo.jsm.streams.delete("BLOCKS");
  await topo.jsm.streams.add({ name: "BLOCKS", subjects: ["CID.sha256.>"], max_msgs_per_subject: 1, discard: DiscardPolicy.Old, max_bytes: 1 << 30 });
  await assert.rejects(ensureTopology(nc), (err: NixcasError) => {
    assert.equal(err.code, "topology.drift");
    assert.match(err.message, /BLOCKS/);
    assert.match(err.message, /discard is 'old', must be 'new'/);
    assert.match(err.message, /discard_new_per_subject is off/);
    return true;
  });
  const after = (await topo.jsm.streams.info("BLOCKS")).config;
  assert.equal(after.discard, DiscardPolicy.Old, "the operator's stream is left as it was");
});

test("BLOCKS without one message per subject is refused", async (t) => {
  const { nc } = await fresh(t);
  const topo = await ensureTopology(nc);
  await topo.jsm.streams.delete("BLOCKS");
  await topo.jsm.streams.add({ name: "BLOCKS", subjects: ["CID.sha256.>"], discard: DiscardPolicy.New });
  await assert.rejects(ensureTopology(nc), (err: NixcasError) => err.code === "topology.drift" && /max_msgs_per_subject is -1, must be 1/.test(err.message));
});

test("a work queue stream without workqueue retention is refused", async (t) => {
  const { nc } = await fresh(t);
  const topo = await ensureTopology(nc);
  await topo.jsm.streams.delete("INDEX");
  await topo.jsm.streams.add({ name: "INDEX", subjects: ["nixcas.work.index"] });
  await assert.rejects(ensureTopology(nc), (err: NixcasError) => err.code === "topology.drift" && /INDEX.*retention is 'limits', must be 'workqueue'/.test(err.message));
});

test("settings that can change are updated and reported", async (t) => {
  const { nc } = await fresh(t);
  const topo = await ensureTopology(nc);
  await topo.jsm.streams.update("DEADLETTER", { max_age: nanos(3_600_000) });
  await topo.jsm.streams.update("BLOCKS", { duplicate_window: nanos(10_000) });
  const actions: TopologyAction[] = [];
  await ensureTopology(nc, { onAction: (a) => actions.push(a) });
  const updated = actions.filter((a) => a.action === "updated");
  assert.deepEqual(updated.map((a) => a.name).sort(), ["BLOCKS", "DEADLETTER"]);
  assert.match(updated.find((a) => a.name === "DEADLETTER")!.changes!.join(), /max_age/);
  assert.equal((await topo.jsm.streams.info("DEADLETTER")).config.max_age, nanos(30 * 86_400_000));
  assert.equal((await topo.jsm.streams.info("BLOCKS")).config.duplicate_window, nanos(120_000));
});

test("replicas beyond what the server can hold fail with the stream's name", async (t) => {
  const { nc } = await fresh(t);
  await assert.rejects(ensureTopology(nc, { replicas: 3 }), (err: NixcasError) => err.code === "topology.create" && /BLOCKS/.test(err.message));
  await assert.rejects(ensureTopology(nc, { replicas: 0 }), (err: NixcasError) => err.code === "topology.replicas");
});

test("concurrent ensureTopology calls (services starting together) all succeed", async (t) => {
  const { server, nc } = await fresh(t);
  const others = await Promise.all([1, 2, 3].map((i) => connectNats({ servers: [server.url], name: `starter-${i}` })));
  t.after(async () => {
    for (const o of others) await o.close();
  });
  await Promise.all([nc, ...others].map((c) => ensureTopology(c)));
  const names: string[] = [];
  for await (const name of (await openTopology(nc)).jsm.streams.names()) names.push(name);
  assert.equal(names.length, Object.keys(STREAMS).length + KV_BUCKETS.length + 1);
});

test("`nixcas setup` creates the topology, then reports it unchanged", async (t) => {
  const server = await startNatsServer();
  t.after(() => server.stop());
  const env = { ...process.env, NATS_URL: server.url, NIXCAS_LOG_LEVEL: "error" };
  const first = await run(NODE, [CLI, "setup"], { env });
  assert.match(first.stdout, /stream\s+BLOCKS\s+created/);
  assert.match(first.stdout, /kv\s+paths\s+created/);
  assert.match(first.stdout, /object-store\s+staging\s+created/);
  assert.match(first.stdout, /topology ready/);
  const second = await run(NODE, [CLI, "setup", "--replicas", "1"], { env });
  assert.doesNotMatch(second.stdout, /created|updated/);
  assert.match(second.stdout, /stream\s+BLOCKS\s+unchanged/);
  await assert.rejects(run(NODE, [CLI, "setup", "--replicas", "9"], { env }), (err: { code: number; stderr: string }) => err.code === 2 && /--replicas takes a number from 1 to 5/.test(err.stderr));
  await assert.rejects(run(NODE, [CLI, "setup"], { env: { ...env, NATS_URL: "" } }), (err: { code: number; stderr: string }) => err.code === 1 && /NATS_URL is not set/.test(err.stderr));
});

test("connectNats fails at start with the servers it tried, and reconnects after a restart", async (t) => {
  const server = await startNatsServer();
  t.after(() => server.stop());
  const nc = await connectNats({ servers: [server.url], name: "reconnecting", reconnectTimeWaitMs: 100 });
  t.after(() => nc.close());
  const topo = await ensureTopology(nc);
  await server.restart();
  let ok = false;
  for (let i = 0; i < 100 && !ok; i++) {
    ok = await topo.kv.paths.put("after-restart", new Uint8Array([1])).then(() => true, () => false);
    if (!ok) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(ok, "the connection came back by itself");

  await server.kill();
  await assert.rejects(connectNats({ servers: [server.url], name: "unlucky", timeoutMs: 2000 }), (err: NixcasError) => {
    assert.equal(err.code, "nats.connect");
    assert.ok(err.message.includes(server.url), err.message);
    assert.ok(err.message.includes("unlucky"));
    return true;
  });
});
