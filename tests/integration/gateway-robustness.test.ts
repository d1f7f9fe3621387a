// The gateway when things go wrong: push authentication, the PUT status policy under internal
// failures and slow pipelines (never 5xx, never 202), damaged stored blocks (the download fails,
// no wrong byte is served), clients that disconnect mid-upload, and the hot cache in /metrics.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, test } from "node:test";
import { headers as natsHeaders } from "@nats-io/nats-core";
import type { CID } from "multiformats/cid";
import { walkManifest } from "../../shared/manifest.ts";
import { BlockStore } from "../../shared/nats/block-store.ts";
import { Catalog } from "../../shared/nats/catalog.ts";
import { blockSubject } from "../../shared/nats/subjects.ts";
import { compressChunk } from "../../shared/zstd.ts";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import { assertSameBytes, http, preparePath, rawGet, uploadPath, zstdDecompress, type PathUpload, gatewayMetric } from "../helpers/cache-http.ts";
import { narFromTree, pseudoRandomBytes } from "../helpers/nar-trees.ts";

const TOKEN = "s3cret-push-token";
const auth = { Authorization: `Bearer ${TOKEN}` };
let cluster: Cluster;
let base: string;

before(async () => {
  cluster = await startCluster({ env: { NIXCAS_PUSH_TOKEN: TOKEN } });
  base = cluster.url;
});
after(async () => {
  await cluster?.stop();
});

/** A counter's value from /metrics (sum over all label sets that contain `labels`). */
const metric = (name: string, labels: Record<string, string> = {}): Promise<number> => gatewayMetric(base, name, labels);

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("push authentication", () => {
  test("PUTs need the token (Bearer or Basic password); GETs never do", async () => {
    const up = preparePath({ nar: narFromTree("auth\n") });
    const none = await http(`${base}/nar/${up.fileName}`, { method: "PUT", body: up.file });
    assert.equal(none.status, 401);
    assert.match(none.headers.get("www-authenticate") ?? "", /^Basic/);
    const wrong = await http(`${base}/nar/${up.fileName}`, { method: "PUT", body: up.file, headers: { Authorization: "Bearer nope" } });
    assert.equal(wrong.status, 401);
    const basic = `Basic ${Buffer.from(`anyone:${TOKEN}`).toString("base64")}`;
    assert.equal((await http(`${base}/nar/${up.fileName}`, { method: "PUT", body: up.file, headers: { Authorization: basic } })).status, 204);
    assert.equal((await http(`${base}/${up.hashPart}.narinfo`, { method: "PUT", body: up.narinfoText })).status, 401);
    const drv = `${up.hashPart}-x.drv`;
    for (const path of ["/nix-cache-info", `/log/${drv}`, `/realisations/sha256:${"ab".repeat(32)}!out.doi`, `/${up.hashPart}.ls`, "/debuginfo/ab.debug"]) {
      assert.equal((await http(`${base}${path}`, { method: "PUT", body: "{}" })).status, 401, `PUT ${path} without token`);
    }
    const ok = await http(`${base}/${up.hashPart}.narinfo`, { method: "PUT", body: up.narinfoText, headers: auth });
    assert.equal(ok.status, 204, ok.text);
    assert.equal((await http(`${base}/${up.hashPart}.narinfo`)).status, 200);
    assert.equal((await http(`${base}/nix-cache-info`)).status, 200);
  });

  test("Expect: 100-continue with a bad token is refused before the body is sent", async () => {
    const answer = await rawExchange(
      `PUT /nar/${"0".repeat(52)}.nar HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n`,
      null,
    );
    assert.match(answer, /^HTTP\/1\.1 401 /);
    assert.doesNotMatch(answer, /100 Continue/);
  });
});

describe("PUT status policy", () => {
  test("an internal error (no ingester) answers 400, never 5xx or 202, and is counted", async () => {
    const up = preparePath({ nar: narFromTree("no ingester\n") });
    assert.equal((await http(`${base}/nar/${up.fileName}`, { method: "PUT", body: up.file, headers: auth })).status, 204);
    const before = await metric("nixcas_gateway_upload_internal_errors_total");
    await cluster.stopService("ingester");
    try {
      const r = await http(`${base}/${up.hashPart}.narinfo`, { method: "PUT", body: up.narinfoText, headers: auth });
      assert.equal(r.status, 400, r.text);
      assert.match(r.text, /ingester/);
    } finally {
      await cluster.startService("ingester");
    }
    assert.equal(await metric("nixcas_gateway_upload_internal_errors_total"), before + 1);
    assert.equal((await http(`${base}/${up.hashPart}.narinfo`)).status, 404);
    // With the ingester back, the same upload goes through.
    const again = await http(`${base}/${up.hashPart}.narinfo`, { method: "PUT", body: up.narinfoText, headers: auth });
    assert.equal(again.status, 204, again.text);
  });

  test("a pipeline slower than NIXCAS_PUT_WAIT_SECONDS: 200 (not 202), and the path arrives later", async () => {
    const up = preparePath({ nar: narFromTree("slow pipeline\n") });
    await cluster.stopService("chunker");
    const saved = cluster.config.putWaitSeconds;
    cluster.config.putWaitSeconds = 1;
    try {
      const r = await uploadPath(base, up, TOKEN);
      assert.equal(r.nar.status, 204);
      assert.equal(r.narinfo.status, 200, r.narinfo.text);
      assert.equal((await http(`${base}/${up.hashPart}.narinfo`)).status, 404, "not advertised before its bytes are stored");
    } finally {
      cluster.config.putWaitSeconds = saved;
      await cluster.startService("chunker");
    }
    await waitFor("the path to become readable", async () => (await http(`${base}/${up.hashPart}.narinfo`)).status === 200);
    assertSameBytes((await http(`${base}/nar/${up.narHash32}.nar`)).body, up.nar);
  });

  test("a client that disconnects mid-body leaves nothing staged", async () => {
    const name = `${"2".repeat(52)}.nar.xz`;
    await rawExchange(`PUT /nar/${name} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 400000\r\n\r\n`, new Uint8Array(150_000), 300);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((await http(`${base}/nar/${name}`, { method: "HEAD" })).status, 404);
    const objects = await cluster.topology.staging.list();
    assert.equal(objects.filter((o) => !o.deleted && o.description === `nar/${name}`).length, 0, "no staged object left");
  });
});

describe("damaged blocks and the hot cache", () => {
  let up: PathUpload;
  let chunks: Array<{ cid: CID; size: number }>;

  before(async () => {
    up = preparePath({ nar: narFromTree({ file: pseudoRandomBytes(600_000, 5) }), name: "damaged" });
    const r = await uploadPath(base, up, TOKEN);
    assert.equal(r.narinfo.status, 204, r.narinfo.text);
    const root = await new Catalog(cluster.topology).manifestForNar(up.narHash32);
    assert.ok(root);
    const blocks = new BlockStore(cluster.topology);
    chunks = [];
    for await (const c of walkManifest(root, async (cid) => (await blocks.get(cid))!)) chunks.push({ cid: c.cid, size: c.size });
    assert.ok(chunks.length >= 3, `several chunks (${chunks.length})`);
  });

  test("cold reads miss the hot cache, warm reads hit it (/metrics)", async () => {
    cluster.gateway.hotCache.clear();
    const hits0 = await metric("nixcas_gateway_hot_cache_hits_total");
    const misses0 = await metric("nixcas_gateway_hot_cache_misses_total");
    assertSameBytes((await http(`${base}/nar/${up.narHash32}.nar`)).body, up.nar);
    const hits1 = await metric("nixcas_gateway_hot_cache_hits_total");
    const misses1 = await metric("nixcas_gateway_hot_cache_misses_total");
    assert.ok(misses1 - misses0 >= chunks.length, `cold: ${misses1 - misses0} misses for ${chunks.length} chunks`);
    assertSameBytes((await http(`${base}/nar/${up.narHash32}.nar`)).body, up.nar);
    const hits2 = await metric("nixcas_gateway_hot_cache_hits_total");
    const misses2 = await metric("nixcas_gateway_hot_cache_misses_total");
    assert.equal(misses2, misses1, "warm: no misses");
    assert.ok(hits2 - hits1 >= chunks.length + 1, `warm: ${hits2 - hits1} hits`);
    assert.ok((await metric("nixcas_gateway_hot_cache_bytes")) > 0);
    assert.ok((await metric("nixcas_gateway_bytes_served_total", { route: "nar" })) >= 2 * up.nar.length);
  });

  test("parallel downloads (cold) all get the exact bytes", async () => {
    cluster.gateway.hotCache.clear();
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) => http(`${base}/nar/${up.narHash32}${i % 2 ? ".nar" : ".nar.zst"}`)),
    );
    for (const [i, a] of answers.entries()) {
      assert.equal(a.status, 200);
      if (i % 2) assertSameBytes(a.body, up.nar, `download ${i}`);
      else assertSameBytes(zstdDecompress(a.body), up.nar, `download ${i}`);
    }
  });

  test("a chunk whose stored bytes do not hash to its CID: the download fails, no wrong bytes", async () => {
    const victim = chunks[1]!;
    const subject = blockSubject(victim.cid);
    await cluster.topology.jsm.streams.purge("BLOCKS", { filter: subject });
    const garbage = pseudoRandomBytes(victim.size, 12345);
    const h = natsHeaders();
    h.set("Nixcas-Codec", "raw");
    h.set("Nixcas-Size", String(victim.size));
    await cluster.topology.js.publish(subject, await compressChunk(garbage), { headers: h });
    cluster.gateway.hotCache.clear();
    const errors0 = await metric("nixcas_gateway_integrity_errors_total");

    for (const suffix of [".nar", ".nar.zst"]) {
      const r = await rawGet(`${base}/nar/${up.narHash32}${suffix}`);
      assert.ok(r.cut || r.status >= 500, `${suffix}: the transfer failed (status ${r.status}, cut ${r.cut})`);
      assert.ok(!Buffer.from(r.body).includes(Buffer.from(garbage.subarray(0, 64))), `${suffix}: the damaged bytes were not sent`);
      if (suffix === ".nar") assert.ok(r.body.length < up.nar.length);
    }
    assert.ok((await metric("nixcas_gateway_integrity_errors_total")) >= errors0 + 2);
    // The narinfo is still served; a Nix client would fail the download and report it.
    assert.equal((await http(`${base}/${up.hashPart}.narinfo`)).status, 200);
  });
});

describe("malformed requests", () => {
  test("headers over the limit: 431 with its own status text", async () => {
    const answer = await rawExchange(`GET /nix-cache-info HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`, null);
    assert.match(answer, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
  });
});

/** Sends `head` (and `body` unless null) on a raw socket; resolves with what came back. */
function rawExchange(head: string, body: Uint8Array | null, destroyAfterMs?: number): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname);
    let received = "";
    const finish = () => {
      socket.destroy();
      resolve(received);
    };
    socket.on("data", (d) => {
      received += d.toString("latin1");
      if (body === null && /\r\n\r\n/.test(received) && !/^HTTP\/1\.1 100/.test(received)) setTimeout(finish, 100);
    });
    socket.on("error", finish);
    socket.on("close", finish);
    socket.write(head);
    if (body !== null) socket.write(body);
    if (destroyAfterMs !== undefined) setTimeout(finish, destroyAfterMs);
    else setTimeout(finish, 5_000);
  });
}
