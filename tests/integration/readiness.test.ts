// Health that tells the truth (issue 6 defect 4), against a real nats-server that is killed
// and restarted under running services: the gateway's /readyz turns 503 while NATS is away
// and /healthz stays 200 (the process is alive and recovers by itself); every service reports
// its readiness in `$SRV` STATS; a lone service serves both on NIXCAS_HEALTH_PORT and stops
// within seconds even while NATS is away.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Svcm } from "@nats-io/services";
import { connectNats } from "../../shared/nats/connect.ts";
import type { ReadinessReport } from "../../shared/nats/readiness.ts";
import { ensureTopology } from "../../shared/nats/topology.ts";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.ts";
import { until } from "../helpers/pipeline.ts";
import { freePort, spawnNixcas } from "../helpers/up-process.ts";


let cluster: Cluster;

before(async () => {
  cluster = await startCluster();
});

after(async () => {
  await cluster?.stop();
});

async function probe(url: string): Promise<{ status: number; body: string }> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    return { status: res.status, body: await res.text() };
  } catch (err) {
    return { status: 0, body: (err as Error).message };
  }
}

test("$SRV STATS of every service carries its readiness", async () => {
  const client = new Svcm(cluster.nc).client();
  const seen = new Set<string>();
  for await (const s of await client.stats()) {
    seen.add(s.name);
    for (const endpoint of s.endpoints ?? []) {
      const readiness = (endpoint.data as { readiness?: ReadinessReport }).readiness;
      assert.deepEqual(readiness, { ready: true, checks: { nats: "ok", jetstream: "ok", kv: "ok" } }, `${s.name} ${endpoint.name}`);
    }
  }
  assert.deepEqual([...seen].sort(), ["nixcas-chunker", "nixcas-gateway", "nixcas-indexer", "nixcas-ingester"]);
});

test("gateway: /readyz is 503 with the reason while NATS is away, /healthz stays 200, both recover", async () => {
  const ready = await probe(`${cluster.url}/readyz`);
  assert.equal(ready.status, 200);
  assert.deepEqual(JSON.parse(ready.body), { ready: true, checks: { nats: "ok", jetstream: "ok", kv: "ok" } });

  await cluster.nats.kill();
  const t0 = Date.now();
  await until("/readyz 503", async () => (await probe(`${cluster.url}/readyz`)).status === 503, 5_000, 50);
  assert.ok(Date.now() - t0 < 5_000);
  const notReady = JSON.parse((await probe(`${cluster.url}/readyz`)).body) as ReadinessReport;
  assert.equal(notReady.ready, false);
  assert.match(notReady.reason!, /NATS|JetStream/);
  assert.deepEqual(await probe(`${cluster.url}/healthz`), { status: 200, body: "ok\n" });

  await cluster.nats.restart();
  await until("/readyz 200 again", async () => (await probe(`${cluster.url}/readyz`)).status === 200, 30_000, 100);
  assert.equal((await probe(`${cluster.url}/healthz`)).status, 200);
});

test("a lone service serves /healthz and /readyz on NIXCAS_HEALTH_PORT and stops within seconds while NATS is away", async () => {
  const port = await freePort();
  const { child, exited, output } = spawnNixcas(["service", "ingester"], { NATS_URL: cluster.nats.url, NIXCAS_HTTP_HOST: "127.0.0.1", NIXCAS_HEALTH_PORT: String(port), NIXCAS_LOG_LEVEL: "warn" });
  const base = `http://127.0.0.1:${port}`;
  await until("the lone ingester to be ready", async () => (await probe(`${base}/readyz`)).status === 200 || child.exitCode !== null, 60_000, 200);
  assert.equal(child.exitCode, null, output());
  assert.deepEqual(await probe(`${base}/healthz`), { status: 200, body: "ok\n" });
  assert.equal((await probe(`${base}/nothing`)).status, 404);

  await cluster.nats.kill();
  try {
    await until("its /readyz 503", async () => (await probe(`${base}/readyz`)).status === 503, 5_000, 50);
    assert.equal((await probe(`${base}/healthz`)).status, 200);
    const t0 = Date.now();
    child.kill("SIGTERM");
    const code = await exited;
    assert.equal(code, 0, output());
    assert.ok(Date.now() - t0 < 10_000, `stopping took ${Date.now() - t0} ms`);
  } finally {
    await cluster.nats.restart();
  }
});

test("a lone service whose NATS connection closes for good exits 1 with one line", async () => {
  // The server comes back with another token: the client's reconnects are refused (twice in a
  // row closes the connection for good in nats.js), which no amount of waiting repairs.
  const server = await startNatsServer({ args: ["--auth", "first-token"] });
  let replacement: NatsServer | null = null;
  after(async () => {
    await replacement?.stop();
    await server.stop();
  });
  const client = await connectNats({ servers: [server.url], name: "readiness-test", token: "first-token" });
  // What `nixcas setup` does first: a lone service only opens the topology.
  await ensureTopology(client);
  const { child, exited, output } = spawnNixcas(["service", "indexer"], { NATS_URL: server.url, NATS_TOKEN: "first-token", NIXCAS_LOG_LEVEL: "warn" });
  try {
    const registered = async () => {
      try {
        for await (const _ of await new Svcm(client).client().ping("nixcas-indexer")) return true;
      } catch {
        // no responders yet
      }
      return child.exitCode !== null;
    };
    await until("the lone indexer to register", registered, 60_000, 200);
  } finally {
    await client.close();
  }
  assert.equal(child.exitCode, null, output());

  await server.kill();
  replacement = await startNatsServer({ port: server.port, args: ["--auth", "another-token"] });
  const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 30_000).unref());
  assert.equal(await Promise.race([exited, timeout]), 1, output());
  assert.match(output(), /^nixcas-indexer: the NATS connection closed for good \(.+\)$/m);
});
