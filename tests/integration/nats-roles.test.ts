// NATS roles against a real nats-server with the JWT auth `nixcas up` generates: anonymous
// clients are refused; every service does its job on its own connection with its role's creds
// (an HTTP upload through gateway, ingester, chunker and indexer, a pre-chunked upload as
// `nixcas push` sends it, with pusher creds, and lone `nixcas service` processes with
// NATS_CREDS); and what a role must not do is refused by the server itself — every denial below
// is the server's "Permissions Violation" answer.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Svcm } from "@nats-io/services";
import { cidForBytes, DAG_CBOR_CODEC, RAW_CODEC } from "../../shared/cid.ts";
import { ManifestBuilder } from "../../shared/manifest.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { INDEX_ADMIN_SUBJECTS, INDEX_QUERY_SUBJECTS, type HasPathsReply, type MissingChunksReply } from "../../shared/nats/index-protocol.ts";
import { encodeIngestBlockRequest, type IngestAccepted } from "../../shared/nats/ingest-protocol.ts";
import { inboxPrefixOf, NATS_ROLES, type NatsRole } from "../../shared/nats/permissions.ts";
import { requestService } from "../../shared/nats/service.ts";
import { blockSubject, SUBJECTS } from "../../shared/nats/subjects.ts";
import { STREAMS } from "../../shared/nats/topology.ts";
import { TokenStore } from "../../shared/nats/token-store.ts";
import { compressChunk } from "../../shared/zstd.ts";
import { http, preparePath, uploadPath, authHeaders } from "../helpers/cache-http.ts";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import { startNatsServer } from "../helpers/nats-server.ts";
import { narFromTree } from "../helpers/nar-trees.ts";
import { hashPartOf, metaFor, until } from "../helpers/pipeline.ts";
import { freePort, spawnNixcas } from "../helpers/up-process.ts";


let cluster: Cluster;
const connections = new Map<NatsRole, NatsConnection>();

before(async () => {
  cluster = await startCluster({ natsRoles: true });
});

after(async () => {
  for (const nc of connections.values()) await nc.close().catch(() => {});
  await cluster?.stop();
});

/** A connection of the test's own with `role`'s creds (as a remote process would have). */
async function as(role: NatsRole): Promise<NatsConnection> {
  let nc = connections.get(role);
  if (!nc) {
    nc = await connectNats({ servers: [cluster.nats.url], name: `test-${role}`, credsFile: cluster.nats.auth!.credsFile(role) });
    connections.set(role, nc);
  }
  return nc;
}

/** A raw JetStream API (or any) request: the server's own answer to exactly `subject`. */
function call(nc: NatsConnection, subject: string, body: unknown = {}): Promise<unknown> {
  return nc.request(subject, JSON.stringify(body), { timeout: 10_000 }).then((m) => m.json());
}

/** The server log written from now on (to check a step hit no permission it lacks). */
function logFromNow(): () => string {
  const at = cluster.nats.log().length;
  return () => cluster.nats.log().slice(at);
}

/** The server's refusal of a publish to `subject`, as nats.js reports it. */
function deniedPublish(subject: string): (err: Error) => boolean {
  return (err) => {
    assert.match(err.message, /Permissions Violation for Publish/, err.message);
    assert.ok(err.message.includes(subject), `${err.message} names ${subject}`);
    return true;
  };
}

/**
 * Subscribes and resolves with the server's answer: its permission error, or "allowed". The
 * server answers a SUB it refuses before the PONG of the flush that follows it.
 */
async function trySubscribe(nc: NatsConnection, subject: string): Promise<string> {
  let refused: string | null = null;
  const sub = nc.subscribe(subject, {
    callback: (err) => {
      if (err) refused = err.message;
    },
  });
  await nc.flush();
  sub.unsubscribe();
  return refused ?? "allowed";
}

test("an anonymous connection is refused", async () => {
  await assert.rejects(connectNats({ servers: [cluster.nats.url], name: "anonymous", timeoutMs: 5_000 }), /Authorization Violation/);
});

test("each role gets replies on its own inbox prefix, and cannot listen on another's", async () => {
  for (const role of NATS_ROLES) {
    const nc = await as(role);
    // A request each role may make: the reply arriving is the server delivering to its inbox.
    if (role === "pusher") await requestService<HasPathsReply>(nc, INDEX_QUERY_SUBJECTS.hasPaths, { hashParts: [] });
    else await jetstreamManager(nc);
  }
  assert.match(await trySubscribe(await as("pusher"), `${inboxPrefixOf("gateway")}.>`), /Permissions Violation for Subscription/);
  assert.match(await trySubscribe(await as("gateway"), "_INBOX.>"), /Permissions Violation for Subscription/);
  assert.equal(await trySubscribe(await as("pusher"), `${inboxPrefixOf("pusher")}.x`), "allowed");
});

describe("every service on its own role connection", () => {
  test("an HTTP upload with a KV token goes through gateway, ingester, chunker and indexer; an admin deletes it", async () => {
    const log = logFromNow();
    const { token: pushToken } = await new TokenStore(cluster.topology).create({ name: "roles-test", scopes: ["push"], expiresAt: null });
    const up = preparePath({ nar: narFromTree({ dir: { a: { pseudoRandom: 300_000, seed: 3 }, b: "roles\n" } }), name: "roles", compression: "xz" });
    const r = await uploadPath(cluster.url, up, pushToken);
    assert.equal(r.nar.status, 204, r.nar.text);
    assert.equal(r.narinfo.status, 204, r.narinfo.text);
    assert.equal((await http(`${cluster.url}/${up.hashPart}.narinfo`)).status, 200);
    const nar = await http(`${cluster.url}/nar/${up.narHash32}.nar`);
    assert.equal(nar.status, 200);
    assert.ok(Buffer.from(nar.body).equals(Buffer.from(up.nar)), "the NAR reads back");

    const { token: adminToken } = await new TokenStore(cluster.topology).create({ name: "roles-admin", scopes: ["admin"], expiresAt: null });
    const deleted = await http(`${cluster.url}/${up.hashPart}.narinfo`, { method: "DELETE", headers: authHeaders(adminToken) });
    assert.ok(deleted.status >= 200 && deleted.status < 300, `${deleted.status} ${deleted.text}`);
    assert.equal((await http(`${cluster.url}/${up.hashPart}.narinfo`)).status, 404);
    assert.doesNotMatch(log(), /Violation/, "no service hit a permission it lacks");
  });

  test("the admin discovers every service over $SRV: they answer through their response permission", async () => {
    const log = logFromNow();
    const names = new Set<string>();
    for await (const info of await new Svcm(await as("admin")).client().ping()) names.add(info.name);
    assert.deepEqual([...names].sort(), ["nixcas-chunker", "nixcas-gateway", "nixcas-indexer", "nixcas-ingester"]);
    assert.doesNotMatch(log(), /Violation/);
  });

  test("a pre-chunked upload as `nixcas push` sends it, with pusher creds", async () => {
    const log = logFromNow();
    const pusher = await as("pusher");
    const data = narFromTree({ dir: { x: { pseudoRandom: 250_000, seed: 9 }, y: "pushed\n".repeat(1000) } });
    const meta = metaFor(data, "pushed");
    const builder = new ManifestBuilder({ fanout: 4 });
    const blocks: Array<{ bytes: Uint8Array; codec: number }> = [];
    for (let at = 0; at < data.length; at += 100_000) {
      const bytes = data.subarray(at, at + 100_000);
      blocks.push({ bytes, codec: RAW_CODEC });
      for (const node of builder.add({ cid: cidForBytes(bytes, RAW_CODEC), size: bytes.length })) blocks.push({ bytes: node.bytes, codec: DAG_CBOR_CODEC });
    }
    const { root, blocks: last } = builder.finish(new Uint8Array(createHash("sha256").update(data).digest()), data.length);
    for (const node of last) blocks.push({ bytes: node.bytes, codec: DAG_CBOR_CODEC });

    const cids = blocks.map((b) => cidForBytes(b.bytes, b.codec));
    const missing = await requestService<MissingChunksReply>(pusher, INDEX_QUERY_SUBJECTS.missingChunks, { cids: cids.map(String) });
    assert.equal(missing.missing.length, cids.length);
    for (const [i, b] of blocks.entries()) {
      const { data: frame, headers } = encodeIngestBlockRequest({ cid: cids[i]!, frame: compressChunk(b.bytes), size: b.bytes.length });
      assert.deepEqual(await requestService(pusher, SUBJECTS.ingestBlock, frame, { headers }), { result: "stored" });
    }
    const accepted = await requestService<IngestAccepted>(pusher, SUBJECTS.ingestManifest, { meta, manifest: root.toString() });
    assert.equal(typeof accepted.uploadId, "string");
    const hashPart = hashPartOf(meta.storePath);
    await until("the pushed path to be indexed", async () => (await requestService<HasPathsReply>(pusher, INDEX_QUERY_SUBJECTS.hasPaths, { hashParts: [hashPart] })).present[0] === true, 60_000, 100);
    assert.doesNotMatch(log(), /Violation/);
  });
});

describe("lone services (`nixcas service <name>` with NATS_CREDS)", () => {
  /** Runs `nixcas service <name>` against `url` with `creds`; resolves its exit code and output. */
  function lone(name: string, url: string, creds: string, healthPort?: number) {
    return spawnNixcas(["service", name], { NATS_URL: url, NATS_CREDS: creds, NATS_TOKEN: "", NIXCAS_HTTP_HOST: "127.0.0.1", NIXCAS_LOG_LEVEL: "warn", ...(healthPort ? { NIXCAS_HEALTH_PORT: String(healthPort) } : {}) });
  }

  test("with its role's creds it opens the topology and is ready", async () => {
    const port = await freePort();
    const chunker = lone("chunker", cluster.nats.url, cluster.nats.auth!.credsFile("chunker"), port);
    const ready = async () => {
      if (chunker.child.exitCode !== null) return true;
      return fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status === 200, () => false);
    };
    await until("the lone chunker to be ready", ready, 60_000, 200);
    assert.equal(chunker.child.exitCode, null, chunker.output());
    chunker.child.kill("SIGTERM");
    assert.equal(await chunker.exited, 0, chunker.output());
  });

  test("it never creates the topology: on a server without it, exit 1 saying to run `nixcas setup`", async () => {
    const empty = await startNatsServer({ jwtAuth: true });
    after(() => empty.stop());
    const indexer = lone("indexer", empty.url, empty.auth!.credsFile("indexer"));
    assert.equal(await indexer.exited, 1, indexer.output());
    assert.match(indexer.output(), /the NATS topology is incomplete .*run `nixcas setup`/);
  });
});

describe("what the server refuses", () => {
  test("no role but admin can create, update, delete or purge a stream", async () => {
    const scratch = { name: "SCRATCH", subjects: ["scratch.>"] };
    for (const role of NATS_ROLES.filter((r) => r !== "admin")) {
      const nc = await as(role);
      for (const [subject, body] of [
        ["$JS.API.STREAM.CREATE.SCRATCH", scratch],
        [`$JS.API.STREAM.UPDATE.${STREAMS.blocks}`, { name: STREAMS.blocks, subjects: ["CID.sha256.>"], max_msgs_per_subject: 2 }],
        [`$JS.API.STREAM.DELETE.${STREAMS.blocks}`, {}],
        [`$JS.API.STREAM.PURGE.${STREAMS.blocks}`, {}],
        ["$JS.API.STREAM.DELETE.KV_tokens", {}],
        ["$JS.API.STREAM.PURGE.KV_paths", {}],
      ] as const) {
        await assert.rejects(call(nc, subject, body), deniedPublish(subject), `${role} ${subject}`);
      }
    }
    // The admin may (the same requests, answered by JetStream).
    const admin = await as("admin");
    assert.equal(((await call(admin, "$JS.API.STREAM.CREATE.SCRATCH", scratch)) as { config?: { name?: string } }).config?.name, "SCRATCH");
    assert.equal(((await call(admin, "$JS.API.STREAM.DELETE.SCRATCH")) as { success?: boolean }).success, true);
    assert.ok(await cluster.topology.jsm.streams.info(STREAMS.blocks));
  });

  test("a pusher cannot publish blocks itself, read KV tokens or uploads, or listen to KV writes", async () => {
    const pusher = await as("pusher");
    const bytes = new TextEncoder().encode("squatted");
    const subject = blockSubject(cidForBytes(bytes, RAW_CODEC));
    await assert.rejects(jetstream(pusher, { checkAPI: false }).publish(subject, compressChunk(bytes)), deniedPublish(subject));
    assert.equal(await cluster.topology.jsm.streams.getMessage(STREAMS.blocks, { last_by_subj: subject }).catch(() => null), null, "nothing was stored");
    for (const bucket of ["tokens", "uploads", "paths"]) {
      for (const get of [`$JS.API.DIRECT.GET.KV_${bucket}.$KV.${bucket}.anything`, `$JS.API.STREAM.MSG.GET.KV_${bucket}`]) {
        await assert.rejects(call(pusher, get, { last_by_subj: `$KV.${bucket}.anything` }), deniedPublish(get), bucket);
      }
      await assert.rejects(jetstream(pusher, { checkAPI: false }).publish(`$KV.${bucket}.anything`, "x"), deniedPublish(`$KV.${bucket}.anything`), bucket);
    }
    assert.match(await trySubscribe(pusher, "$KV.tokens.>"), /Permissions Violation for Subscription/);
    assert.match(await trySubscribe(pusher, "nixcas.ingest.>"), /Permissions Violation for Subscription/);
    await assert.rejects(requestService(pusher, INDEX_ADMIN_SUBJECTS.deletePath, {}), deniedPublish(INDEX_ADMIN_SUBJECTS.deletePath));
  });

  test("the gateway cannot delete a stream or write the catalog the indexer owns", async () => {
    const gateway = await as("gateway");
    await assert.rejects(call(gateway, `$JS.API.STREAM.DELETE.${STREAMS.index}`), deniedPublish(`$JS.API.STREAM.DELETE.${STREAMS.index}`));
    const paths = await new Kvm(jetstream(gateway)).open("paths");
    await assert.rejects(paths.put("x", "y"), deniedPublish("$KV.paths.x"));
    const tokens = await new Kvm(jetstream(gateway)).open("tokens");
    await assert.rejects(tokens.put("x", "y"), deniedPublish("$KV.tokens.x"));
  });

  test("the ingester cannot write KV paths or take work items off INDEX", async () => {
    const ingester = await as("ingester");
    const paths = await new Kvm(jetstream(ingester)).open("paths");
    await assert.rejects(paths.put("x", "y"), deniedPublish("$KV.paths.x"));
    await assert.rejects(call(ingester, `$JS.API.CONSUMER.INFO.${STREAMS.index}.indexer`), deniedPublish(`$JS.API.CONSUMER.INFO.${STREAMS.index}.indexer`));
    await assert.rejects(call(ingester, `$JS.API.CONSUMER.MSG.NEXT.${STREAMS.index}.indexer`, { batch: 1 }), deniedPublish(`$JS.API.CONSUMER.MSG.NEXT.${STREAMS.index}.indexer`));
  });

  test("the tierer cannot write the catalog or tokens, read tokens, submit uploads or take work items", async () => {
    const tierer = await as("tierer");
    for (const bucket of ["paths", "nars", "tokens"]) {
      await assert.rejects(jetstream(tierer, { checkAPI: false }).publish(`$KV.${bucket}.x`, "y"), deniedPublish(`$KV.${bucket}.x`), bucket);
    }
    const tokenGet = "$JS.API.DIRECT.GET.KV_tokens.$KV.tokens.anything";
    await assert.rejects(call(tierer, tokenGet, {}), deniedPublish(tokenGet));
    const tokenScan = "$JS.API.CONSUMER.CREATE.KV_tokens.scan";
    await assert.rejects(call(tierer, tokenScan, { stream_name: "KV_tokens", config: { name: "scan" } }), deniedPublish(tokenScan));
    await assert.rejects(call(tierer, `$JS.API.CONSUMER.MSG.NEXT.${STREAMS.index}.indexer`, { batch: 1 }), deniedPublish(`$JS.API.CONSUMER.MSG.NEXT.${STREAMS.index}.indexer`));
    await assert.rejects(requestService(tierer, SUBJECTS.ingestNar, {}), deniedPublish(SUBJECTS.ingestNar));
    // What it owns, it may write.
    const cold = await new Kvm(jetstream(tierer)).open("cold");
    await cold.put("ab".repeat(32), "{}");
    await cold.delete("ab".repeat(32));
  });

  test("a service cannot publish into another role's inbox; it answers only requests it received", async () => {
    const indexer = await as("indexer");
    let refused: string | null = null;
    void (async () => {
      for await (const s of indexer.status()) if (s.type === "error") refused = (s.error as Error).message;
    })();
    indexer.publish(`${inboxPrefixOf("pusher")}.forged`, "not a reply");
    await until("the server's answer to the forged reply", async () => (await indexer.flush(), refused !== null), 5_000);
    assert.match(refused!, /Permissions Violation for Publish to "_INBOX_pusher.forged"/);
  });
});
