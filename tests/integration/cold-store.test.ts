// The cold tier's backends through one test table (shared/cold/, docs/tiering.md "Cold tier
// backends and packs"): a directory, S3 on s3rver directly, and S3 through the archive front
// (tests/helpers/s3.ts) — a proxy over s3rver that stands in for AWS where s3rver has no
// archive classes, RestoreObject or bucket lifecycle. What only AWS does is tested on the front
// and said so; s3rver's own refusals are asserted, so the front's reason to exist is checked too.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { GetBucketLifecycleConfigurationCommand, PutBucketLifecycleConfigurationCommand, RestoreObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { cidForBytes } from "../../shared/cid.ts";
import { coldStoreOf, defaultColdDir, type ColdStore } from "../../shared/cold/cold-store.ts";
import { DirColdStore } from "../../shared/cold/dir-cold-store.ts";
import { installLifecycleRule, LIFECYCLE_RULE_ID, parseLifecycle } from "../../shared/cold/lifecycle.ts";
import { coldPackReader, packKey, PackWriter, readPackIndex } from "../../shared/cold/pack.ts";
import { restoreStateOf, S3ColdStore } from "../../shared/cold/s3-cold-store.ts";
import { loadConfig } from "../../shared/config.ts";
import { ConfigError, type NixcasError } from "../../shared/errors.ts";
import { verifyFrame } from "../../shared/nats/block-store.ts";
import { compressChunk } from "../../shared/zstd.ts";
import { startNatsServer } from "../helpers/nats-server.ts";
import { S3RVER_CREDENTIALS, startS3, type S3TestServer } from "../helpers/s3.ts";

const run = promisify(execFile);
const NODE = new URL("../../node_modules/.bin/node", import.meta.url).pathname;
const CLI = new URL("../../cli/nixcas.ts", import.meta.url).pathname;

/** A pack of `n` distinct chunks of a few KiB (compressible, so frames differ from blocks). */
function samplePack(n: number, seed: number) {
  const writer = new PackWriter();
  const blocks = new Map<string, Uint8Array>();
  for (let i = 0; i < n; i++) {
    const bytes = new Uint8Array(3000 + ((i * 1237) % 5000));
    for (let j = 0; j < bytes.length; j++) bytes[j] = ((j >> 3) * (i + seed + 7)) & 0xff;
    const cid = cidForBytes(bytes);
    blocks.set(cid.toString(), bytes);
    writer.add(cid, compressChunk(bytes), bytes.length);
  }
  return { ...writer.finish(), blocks };
}

function hasCode(code: string) {
  return (err: NixcasError) => {
    assert.equal(err.code, code, err.message);
    return true;
  };
}

async function listed(store: ColdStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list(prefix)) out.push(`${o.key}:${o.bytes}`);
  return out.sort();
}

let s3: S3TestServer;
let dir: string;
before(async () => {
  s3 = await startS3();
  dir = await mkdtemp(join(tmpdir(), "nixcas-cold-"));
});
after(async () => {
  await s3.stop();
  await rm(dir, { recursive: true, force: true });
});

interface Backend {
  name: string;
  store(): ColdStore;
  /** Storage class `head` reports for an object put with STANDARD_IA. */
  expectedClass: string;
}

const BACKENDS: Backend[] = [
  { name: "directory", store: () => new DirColdStore(join(dir, "cold")), expectedClass: "DIR" },
  { name: "S3 on s3rver directly", store: () => s3.store({ prefix: "direct/" }, true), expectedClass: "STANDARD_IA" },
  { name: "S3 through the archive front", store: () => s3.store({ prefix: "front/" }), expectedClass: "STANDARD_IA" },
];

for (const backend of BACKENDS) {
  describe(`cold store: ${backend.name}`, () => {
    test("a pack put whole is read back by ranges: index from the end, every frame verified", async () => {
      const store = backend.store();
      const { body, entries, blocks } = samplePack(20, 1);
      const key = packKey("range-test");
      await store.put(key, body, "STANDARD_IA");
      assert.deepEqual(await store.head(key), { bytes: body.length, storageClass: backend.expectedClass, archived: false, restore: "none" });
      const index = await readPackIndex(coldPackReader(store, key, body.length));
      assert.deepEqual(index.map((e) => e.cid.toString()), entries.map((e) => e.cid.toString()));
      for (const entry of index) {
        const frame = await store.getRange(key, entry.offset, entry.length);
        const bytes = await verifyFrame(entry.cid, { frame, size: entry.size, codec: entry.codec });
        assert.ok(Buffer.from(bytes).equals(blocks.get(entry.cid.toString())!));
      }
      assert.ok(Buffer.from(await store.getRange(key, 0, 8)).equals(body.subarray(0, 8)));
      assert.ok(Buffer.from(await store.getRange(key, body.length - 1, 1)).equals(body.subarray(body.length - 1)));
      assert.equal((await store.getRange(key, 5, 0)).length, 0);
    });

    test("an object of 24 MiB (a pack of realistic size) is written whole and read at its end", async () => {
      const store = backend.store();
      const body = new Uint8Array(24 * 1024 * 1024);
      for (let i = 0; i < body.length; i += 4096) body[i] = (i >> 12) & 0xff;
      await store.put(packKey("large"), body);
      assert.equal((await store.head(packKey("large")))!.bytes, body.length);
      const tail = await store.getRange(packKey("large"), body.length - 8192, 8192);
      assert.ok(Buffer.from(tail).equals(body.subarray(body.length - 8192)));
      await store.delete(packKey("large"));
    });

    test("a missing object: head null, reads and restores cold.missing, delete quiet", async () => {
      const store = backend.store();
      const key = packKey("never-written");
      assert.equal(await store.head(key), null);
      await assert.rejects(store.getRange(key, 0, 10), hasCode("cold.missing"));
      await assert.rejects(store.getRange(key, 0, 0), hasCode("cold.missing"));
      await assert.rejects(store.restore(key, 1), hasCode("cold.missing"));
      await store.delete(key);
    });

    test("a range past the end is cold.range, not short bytes", async () => {
      const store = backend.store();
      const key = packKey("short");
      await store.put(key, new Uint8Array([1, 2, 3, 4, 5]));
      await assert.rejects(store.getRange(key, 3, 10), hasCode("cold.range"));
      await assert.rejects(store.getRange(key, 100, 1), hasCode("cold.range"));
      await assert.rejects(store.getRange(key, -1, 1), hasCode("cold.range"));
    });

    test("put replaces; list by prefix gives keys as put; delete removes", async () => {
      const store = backend.store();
      await store.put("listing/a.pack", new Uint8Array(10));
      await store.put("listing/a.pack", new Uint8Array(7));
      await store.put("listing/b.pack", new Uint8Array(3));
      await store.put("listing-other/c.bin", new Uint8Array(1));
      assert.deepEqual(await listed(store, "listing/"), ["listing/a.pack:7", "listing/b.pack:3"]);
      assert.ok((await listed(store, "")).includes("listing-other/c.bin:1"));
      assert.deepEqual(await listed(store, "listing"), ["listing-other/c.bin:1", "listing/a.pack:7", "listing/b.pack:3"]);
      assert.deepEqual(await listed(store, "listing/b"), ["listing/b.pack:3"]);
      await store.delete("listing/a.pack");
      assert.equal(await store.head("listing/a.pack"), null);
      assert.deepEqual(await listed(store, "listing/a"), []);
    });

    test("restore of an object that is not archived is a no-op", async () => {
      const store = backend.store();
      await store.put("packs/plain.pack", new Uint8Array([9]), "STANDARD_IA");
      await store.restore("packs/plain.pack", 1);
      assert.deepEqual(await store.getRange("packs/plain.pack", 0, 1), new Uint8Array([9]));
    });

    test("keys that could leave the store or its prefix are refused", async () => {
      const store = backend.store();
      for (const key of ["../escape", "/abs", "a//b", "packs/../x", ".tmp/x", "", "a/"]) {
        await assert.rejects(store.put(key, new Uint8Array(1)), hasCode("cold.key"), key);
        await assert.rejects(store.getRange(key, 0, 1), hasCode("cold.key"), key);
      }
    });
  });
}

test("directory: no temporary file is left after puts, and none is listed", async () => {
  const root = join(dir, "tmp-check");
  const store = new DirColdStore(root);
  await store.put("packs/x.pack", new Uint8Array(100));
  assert.deepEqual(await readdir(join(root, ".tmp")), []);
  assert.deepEqual(await listed(store, ""), ["packs/x.pack:100"]);
});

describe("archive classes (the archive front standing in for AWS S3)", () => {
  test("s3rver alone has no RestoreObject and no lifecycle: why the front exists", async () => {
    const direct = new S3Client({ region: "us-east-1", endpoint: s3.s3rverEndpoint, forcePathStyle: true, credentials: S3RVER_CREDENTIALS });
    const store = s3.store({ prefix: "why/" }, true);
    await store.put("packs/g.pack", new Uint8Array([1]), "GLACIER");
    // s3rver serves a GLACIER object like any other: no archive semantics of its own.
    assert.deepEqual(await store.getRange("packs/g.pack", 0, 1), new Uint8Array([1]));
    await assert.rejects(direct.send(new RestoreObjectCommand({ Bucket: s3.bucket, Key: "why/packs/g.pack", RestoreRequest: { Days: 1 } })));
    await assert.rejects(direct.send(new GetBucketLifecycleConfigurationCommand({ Bucket: s3.bucket })), (err: Error) => /NotImplemented|not implemented/i.test(`${err.name} ${err.message}`));
  });

  for (const storageClass of ["GLACIER", "DEEP_ARCHIVE"]) {
    test(`${storageClass}: cold.archived until a restore completes, then readable; HEAD tells the restore state`, async () => {
      const store = s3.store({ prefix: `arch-${storageClass}/` });
      const { body, entries } = samplePack(5, 2);
      const key = packKey("archived");
      await store.put(key, body, storageClass);
      assert.deepEqual(await store.head(key), { bytes: body.length, storageClass, archived: true, restore: "none" });
      await assert.rejects(store.getRange(key, entries[0]!.offset, entries[0]!.length), hasCode("cold.archived"));

      await store.restore(key, 2);
      assert.equal((await store.head(key))!.restore, "in-progress");
      await assert.rejects(store.getRange(key, 0, 8), hasCode("cold.archived"));
      // A second reader asking while it is in progress: no error (S3 says 409 RestoreAlreadyInProgress; head short-cuts it).
      await store.restore(key, 2);

      s3.completeRestores();
      assert.deepEqual(await store.head(key), { bytes: body.length, storageClass, archived: true, restore: "done" });
      const index = await readPackIndex(coldPackReader(store, key, body.length));
      for (const entry of index) await verifyFrame(entry.cid, { frame: await store.getRange(key, entry.offset, entry.length), size: entry.size, codec: entry.codec });
      // Asking again while restored extends the copy (200), no error.
      await store.restore(key, 5);

      s3.expireRestore(`arch-${storageClass}/${key}`);
      await assert.rejects(store.getRange(key, 0, 8), hasCode("cold.archived"));
    });
  }

  test("a lifecycle transition to DEEP_ARCHIVE is seen by HEAD; a restore with a delay completes by itself", async (t) => {
    const delayed = await startS3({ bucket: "delayed", restoreDelayMs: 50 });
    t.after(() => delayed.stop());
    const store = delayed.store();
    await store.put("packs/t.pack", new Uint8Array([4, 5, 6]), "STANDARD_IA");
    assert.equal((await store.head("packs/t.pack"))!.archived, false);
    delayed.transition("nixcas/packs/t.pack", "DEEP_ARCHIVE");
    assert.deepEqual(await store.head("packs/t.pack"), { bytes: 3, storageClass: "DEEP_ARCHIVE", archived: true, restore: "none" });
    await store.restore("packs/t.pack", 1);
    // Waits for the state, not for a time.
    while ((await store.head("packs/t.pack"))!.restore !== "done") await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(await store.getRange("packs/t.pack", 1, 2), new Uint8Array([5, 6]));
  });

  test("GLACIER_IR is readable at once (s3rver refuses the class; the front accepts it as S3 does)", async () => {
    const store = s3.store({ prefix: "ir/" });
    await store.put("packs/ir.pack", new Uint8Array([7]), "GLACIER_IR");
    assert.deepEqual(await store.head("packs/ir.pack"), { bytes: 1, storageClass: "GLACIER_IR", archived: false, restore: "none" });
    assert.deepEqual(await store.getRange("packs/ir.pack", 0, 1), new Uint8Array([7]));
    const before = s3.requests.filter((r) => r.query.includes("restore")).length;
    await store.restore("packs/ir.pack", 1);
    assert.equal(s3.requests.filter((r) => r.query.includes("restore")).length, before, "no RestoreObject for an object that is not archived");
  });
});

describe("lifecycle rule", () => {
  test("NIXCAS_S3_LIFECYCLE parses; mistakes are ConfigErrors naming the part", () => {
    assert.deepEqual(parseLifecycle("GLACIER_IR:30,DEEP_ARCHIVE:180"), [
      { storageClass: "GLACIER_IR", days: 30 },
      { storageClass: "DEEP_ARCHIVE", days: 180 },
    ]);
    assert.deepEqual(parseLifecycle("none"), []);
    assert.deepEqual(parseLifecycle(""), []);
    for (const [bad, pattern] of [
      ["GLACIER_IR", /not <storage class>:<days>/],
      ["STANDARD:30", /cannot transition objects to 'STANDARD'/],
      ["GLACIER:90,GLACIER_IR:30", /increasing days/],
      ["glacier:30", /not <storage class>:<days>/],
    ] as const) {
      assert.throws(() => parseLifecycle(bad), (err: Error) => err instanceof ConfigError && pattern.test(err.message), bad);
    }
  });

  test("installed on the bucket (received by the front), idempotent, updated, removed — other rules kept", async (t) => {
    const server = await startS3({ bucket: "lifecycle" });
    t.after(() => server.stop());
    const store = server.store();
    assert.equal(await installLifecycleRule(store, parseLifecycle("GLACIER_IR:30,DEEP_ARCHIVE:180")), "created");
    assert.ok(server.requests.some((r) => r.method === "PUT" && /^\/lifecycle\/?$/.test(r.path) && r.query.startsWith("lifecycle")));
    const xml = server.lifecycleXml()!;
    assert.match(xml, new RegExp(`<ID>${LIFECYCLE_RULE_ID}</ID>`));
    assert.match(xml, /<Prefix>nixcas\/packs\/<\/Prefix>/);
    assert.match(xml, /<Days>30<\/Days><StorageClass>GLACIER_IR<\/StorageClass>/);
    assert.match(xml, /<Days>180<\/Days><StorageClass>DEEP_ARCHIVE<\/StorageClass>/);
    assert.equal(await installLifecycleRule(store, parseLifecycle("GLACIER_IR:30,DEEP_ARCHIVE:180")), "unchanged");

    // Someone else's rule on the same bucket survives every change of ours.
    const rules = (await store.client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: store.bucket }))).Rules ?? [];
    await store.client.send(
      new PutBucketLifecycleConfigurationCommand({ Bucket: store.bucket, LifecycleConfiguration: { Rules: [...rules, { ID: "logs-expiry", Status: "Enabled", Filter: { Prefix: "logs/" }, Expiration: { Days: 7 } }] } }),
    );
    assert.equal(await installLifecycleRule(store, parseLifecycle("DEEP_ARCHIVE:90")), "updated");
    const after = (await store.client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: store.bucket }))).Rules ?? [];
    assert.deepEqual(after.map((r) => r.ID).sort(), ["logs-expiry", LIFECYCLE_RULE_ID]);
    assert.deepEqual(after.find((r) => r.ID === LIFECYCLE_RULE_ID)!.Transitions?.map((x) => `${x.StorageClass}:${x.Days}`), ["DEEP_ARCHIVE:90"]);
    assert.equal(await installLifecycleRule(store, []), "removed");
    assert.deepEqual(((await store.client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: store.bucket }))).Rules ?? []).map((r) => r.ID), ["logs-expiry"]);
    assert.equal(await installLifecycleRule(store, []), "absent");
  });

  test("`nixcas setup` with NIXCAS_S3_BUCKET installs the rule; a bad NIXCAS_S3_LIFECYCLE changes nothing", async (t) => {
    const nats = await startNatsServer();
    const server = await startS3({ bucket: "setup" });
    t.after(async () => {
      await server.stop();
      await nats.stop();
    });
    const env = { ...process.env, NATS_URL: nats.url, NIXCAS_LOG_LEVEL: "error", ...server.env({ lifecycle: "GLACIER_IR:30,DEEP_ARCHIVE:180" }) };
    await assert.rejects(run(NODE, [CLI, "setup"], { env: { ...env, NIXCAS_S3_LIFECYCLE: "GLACIER:x" } }), (err: { code: number; stderr: string }) => err.code === 1 && /NIXCAS_S3_LIFECYCLE/.test(err.stderr));
    assert.equal(server.lifecycleXml(), null);
    const first = await run(NODE, [CLI, "setup"], { env });
    assert.match(first.stdout, /lifecycle\s+nixcas-packs\s+created \(s3:\/\/setup\/nixcas\/packs\/: GLACIER_IR after 30 days, DEEP_ARCHIVE after 180 days\)/);
    assert.match(server.lifecycleXml()!, /<StorageClass>DEEP_ARCHIVE<\/StorageClass>/);
    const second = await run(NODE, [CLI, "setup"], { env });
    assert.match(second.stdout, /lifecycle\s+nixcas-packs\s+unchanged/);
  });
});

describe("choice of backend and S3 details", () => {
  test("coldStoreOf: S3 when a bucket is set, else NIXCAS_COLD_DIR, else the default dir given, else none", () => {
    const base = { NIXCAS_DATA_DIR: "/data" };
    const s3Config = loadConfig({ ...base, NIXCAS_S3_BUCKET: "b", NIXCAS_S3_ENDPOINT: "http://127.0.0.1:1", NIXCAS_COLD_DIR: "/cold" });
    assert.ok(coldStoreOf(s3Config) instanceof S3ColdStore);
    assert.equal(coldStoreOf(s3Config)!.description, "s3://b/nixcas/");
    assert.equal(coldStoreOf(loadConfig({ ...base, NIXCAS_COLD_DIR: "/cold" }), "/other")!.description, "dir:/cold");
    const plain = loadConfig(base);
    assert.equal(coldStoreOf(plain, defaultColdDir(plain))!.description, "dir:/data/cold");
    assert.equal(coldStoreOf(plain), null);
  });

  test("x-amz-restore header values map to restore states", () => {
    assert.equal(restoreStateOf(undefined), "none");
    assert.equal(restoreStateOf('ongoing-request="true"'), "in-progress");
    assert.equal(restoreStateOf('ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"'), "done");
  });
});
