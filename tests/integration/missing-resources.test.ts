// A stream or bucket deleted under a running cache (issue 6, defect 8): the upload is refused
// with a 4xx whose body names what is missing and how to restore it, not a "timeout".
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { STREAMS } from "../../shared/nats/topology.ts";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import { http, preparePath } from "../helpers/cache-http.ts";
import { narFromTree, pseudoRandomBytes } from "../helpers/nar-trees.ts";

let cluster: Cluster;
before(async () => {
  cluster = await startCluster({ env: { NIXCAS_ALLOW_ANONYMOUS_PUSH: "1" } });
});
after(() => cluster?.stop());

test("the INGEST stream deleted under a running gateway: the narinfo PUT's 4xx names the missing stream", async () => {
  const up = preparePath({ nar: narFromTree(pseudoRandomBytes(50_000, 11)) });
  assert.equal((await http(`${cluster.url}/nar/${up.fileName}`, { method: "PUT", body: up.file })).status, 204);
  await cluster.topology.jsm.streams.delete(STREAMS.ingest);
  const started = Date.now();
  const refused = await http(`${cluster.url}/${up.hashPart}.narinfo`, { method: "PUT", body: up.narinfoText });
  const seconds = (Date.now() - started) / 1000;
  assert.equal(refused.status, 400, refused.text);
  assert.match(refused.text, /no JetStream stream stores nixcas\.work\.ingest\.small: stream INGEST is missing .*`nixcas setup`/);
  assert.doesNotMatch(refused.text, /timeout|jetstream is not enabled/i);
  assert.ok(seconds < 10, `answered after ${seconds} s`);
  assert.equal((await http(`${cluster.url}/${up.hashPart}.narinfo`)).status, 404, "nothing advertised");
});

test("the uploads KV bucket deleted under a running gateway: the narinfo PUT's 4xx names the missing bucket", async () => {
  const up = preparePath({ nar: narFromTree(pseudoRandomBytes(50_000, 12)) });
  assert.equal((await http(`${cluster.url}/nar/${up.fileName}`, { method: "PUT", body: up.file })).status, 204);
  await cluster.topology.jsm.streams.delete("KV_uploads");
  const refused = await http(`${cluster.url}/${up.hashPart}.narinfo`, { method: "PUT", body: up.narinfoText });
  assert.equal(refused.status, 400, refused.text);
  assert.match(refused.text, /KV bucket uploads \(stream KV_uploads\) is missing/);
  assert.doesNotMatch(refused.text, /timeout|jetstream is not enabled/i);
});
