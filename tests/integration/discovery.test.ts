// Every service registers with @nats-io/services: one $SRV.PING finds all five, and each
// answers on its own subjects.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Svcm } from "@nats-io/services";
import { startAllInOne } from "../../cli/all-in-one.ts";
import { loadConfig } from "../../shared/config.ts";
import { silentLogger } from "../../shared/log.ts";
import { requestService } from "../../shared/nats/service.ts";
import { SUBJECTS } from "../../shared/nats/subjects.ts";
import { generateSecretKey } from "../../shared/signing.ts";
import { startNatsServer } from "../helpers/nats-server.ts";

test("$SRV.PING discovers the ingester, chunker, indexer, tierer and gateway", async () => {
  const server = await startNatsServer();
  const dataDir = await mkdtemp(join(tmpdir(), "nixcas-discovery-"));
  let stopCluster = async () => {};
  after(async () => {
    await stopCluster(); // before the server: draining needs it
    await server.stop();
    await rm(dataDir, { recursive: true, force: true });
  });
  const config = loadConfig({ NATS_URL: server.url, NIXCAS_DATA_DIR: dataDir, NIXCAS_HTTP_HOST: "127.0.0.1", NIXCAS_HTTP_PORT: "0" });
  const cluster = await startAllInOne({ config, secretKey: generateSecretKey("discovery-1"), logger: silentLogger });
  stopCluster = cluster.stop;

  const names = new Set<string>();
  for await (const info of await new Svcm(cluster.nc).client().ping()) names.add(info.name);
  assert.deepEqual([...names].sort(), ["nixcas-chunker", "nixcas-gateway", "nixcas-indexer", "nixcas-ingester", "nixcas-tierer"]);

  const chunker = (await requestService(cluster.nc, SUBJECTS.chunkerStats, {})) as { nars: number };
  assert.equal(chunker.nars, 0);
  const gateway = (await requestService(cluster.nc, SUBJECTS.gatewayStats, {})) as { url: string; metrics: string };
  assert.equal(gateway.url, `http://127.0.0.1:${cluster.gatewayPort}`);
  assert.match(gateway.metrics, /nixcas_gateway/);
});
