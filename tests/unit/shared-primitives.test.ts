// The primitives the services share instead of keeping copies: the object store digest parser
// (staging-store.ts), ordered read-ahead (read-ahead.ts), the bounded task window
// (bounded-tasks.ts) and the NAR verifier (nar-verifier.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { BoundedTasks } from "../../shared/bounded-tasks.ts";
import { FormatError, IntegrityError } from "../../shared/errors.ts";
import { NarVerifier } from "../../shared/nar-verifier.ts";
import { parseStagingDigest } from "../../shared/nats/staging-store.ts";
import { readAhead, type ReadAheadBudget } from "../../shared/read-ahead.ts";
import { narFromTree } from "../helpers/nar-trees.ts";

const sha256 = (bytes: Uint8Array) => new Uint8Array(createHash("sha256").update(bytes).digest());

test("object store digests: base64url (padded or not), standard base64 and hex all read; anything else is null", () => {
  const digest = sha256(new TextEncoder().encode("a staged NAR"));
  const b64 = Buffer.from(digest).toString("base64");
  const b64url = Buffer.from(digest).toString("base64url");
  assert.ok(b64url !== b64.replace(/=+$/, ""), "this digest spells differently in the two alphabets");
  for (const body of [`${b64url}=`, b64url, b64, Buffer.from(digest).toString("hex"), Buffer.from(digest).toString("hex").toUpperCase()]) {
    assert.deepEqual(parseStagingDigest(`SHA-256=${body}`), digest, body);
  }
  for (const bad of [
    `sha-256=${b64url}`, // the prefix is case-sensitive, as @nats-io/obj's reader
    `SHA-512=${b64url}`,
    `SHA-256=${Buffer.from(digest.subarray(0, 31)).toString("base64url")}`, // 31 bytes
    `SHA-256=${b64url.slice(0, 20)}!${b64url.slice(21)}`, // not base64 at all
    `SHA-256=${Buffer.from(digest).toString("hex").slice(0, 63)}`, // odd hex
    "SHA-256=",
    "",
  ]) {
    assert.equal(parseStagingDigest(bad), null, bad);
  }
});

/** Reads that finish in a chosen order, recording how many run at once. */
function delayedReads(delays: Map<number, number>) {
  let running = 0;
  let maxRunning = 0;
  const finished: number[] = [];
  const read = async (n: number) => {
    running++;
    maxRunning = Math.max(maxRunning, running);
    await sleep(delays.get(n) ?? 1);
    running--;
    finished.push(n);
    if (n < 0) throw new Error(`read ${n} failed`);
    return n * 10;
  };
  return { read, stats: () => ({ running, maxRunning, finished }) };
}

async function* numbers(list: number[]): AsyncGenerator<number> {
  yield* list;
}

test("readAhead: results in item order however the reads finish, at most maxInFlight running", async () => {
  const items = Array.from({ length: 20 }, (_, i) => i);
  const { read, stats } = delayedReads(new Map(items.map((i) => [i, (i * 7) % 5])));
  const got: number[] = [];
  for await (const { item, result } of readAhead(numbers(items), read, { maxInFlight: 4 })) {
    assert.equal(result, item * 10);
    got.push(item);
  }
  assert.deepEqual(got, items);
  assert.equal(stats().maxRunning, 4);
});

test("readAhead: the weight bound lets one read through alone, the budget is shared and given back", async () => {
  let available = 100;
  const budget: ReadAheadBudget = {
    tryTake: (n) => (n <= available ? ((available -= n), true) : false),
    take: (n) => void (available -= n),
    give: (n) => void (available += n),
  };
  const { read, stats } = delayedReads(new Map());
  const weights = [60, 30, 30, 150, 10];
  const got: number[] = [];
  for await (const { item } of readAhead(numbers([0, 1, 2, 3, 4]), read, { maxInFlight: 8, weight: (i) => weights[i]!, maxWeightInFlight: 100, budget })) {
    got.push(item);
    assert.ok(available >= -150, "only the one read a reader always may make goes past the budget");
  }
  assert.deepEqual(got, [0, 1, 2, 3, 4]);
  assert.equal(stats().maxRunning, 2, "60 + 30 fit in 100, a third does not");
  assert.equal(available, 100);
});

test("readAhead: a failed read is thrown in its turn, and no read is left running", async () => {
  const { read, stats } = delayedReads(new Map([[2, 20], [-1, 1]]));
  const got: number[] = [];
  await assert.rejects(async () => {
    for await (const { item } of readAhead(numbers([0, 1, 2, -1, 4, 5]), read, { maxInFlight: 4 })) got.push(item);
  }, /read -1 failed/);
  assert.deepEqual(got, [0, 1, 2]);
  assert.equal(stats().running, 0);
});

test("readAhead: a consumer that stops early leaves no read running; an aborted signal stops yielding", async () => {
  const { read, stats } = delayedReads(new Map([[3, 30]]));
  for await (const { item } of readAhead(numbers([0, 1, 2, 3, 4, 5]), read, { maxInFlight: 4 })) {
    if (item === 1) break;
  }
  assert.equal(stats().running, 0);
  const abort = new AbortController();
  const got: number[] = [];
  for await (const { item } of readAhead(numbers([0, 1, 2, 3]), read, { maxInFlight: 2, signal: abort.signal })) {
    got.push(item);
    abort.abort();
  }
  assert.deepEqual(got, [0]);
});

test("BoundedTasks: at most N running; the first failure is thrown by the next add and by drain", async () => {
  const tasks = new BoundedTasks(3);
  let running = 0;
  let maxRunning = 0;
  const task = (ms: number, fail = false) => async () => {
    running++;
    maxRunning = Math.max(maxRunning, running);
    await sleep(ms);
    running--;
    if (fail) throw new Error(`failed after ${ms} ms`);
  };
  for (let i = 0; i < 10; i++) await tasks.add(task(i % 3));
  await tasks.drain();
  assert.equal(maxRunning, 3);
  assert.equal(running, 0);

  const failing = new BoundedTasks(2);
  await failing.add(task(1, true));
  await failing.add(task(30));
  await assert.rejects(failing.add(task(1)), /failed after 1 ms/);
  assert.throws(() => failing.check(), /failed after 1 ms/);
  await failing.settle();
  assert.equal(running, 0);
  await assert.rejects(failing.drain(), /failed after 1 ms/);
  assert.throws(() => new BoundedTasks(0), RangeError);
});

test("NarVerifier: a NAR of the declared size and hash passes and yields its listing; every mismatch has its code", () => {
  const nar = narFromTree({ dir: { a: "hello\n", b: { symlink: "a" } } });
  const declared = { narHash: sha256(nar), narSize: nar.length };
  const ok = new NarVerifier(declared, { bytes: "nar" });
  for (let i = 0; i < nar.length; i += 7) ok.write(nar.subarray(i, i + 7));
  const listing = ok.finish();
  assert.equal(listing.root.type, "directory");
  assert.equal(listing.root.type === "directory" && listing.root.entries.size, 2);

  const external = new NarVerifier(declared, { bytes: "nar", hash: false });
  external.write(nar);
  external.finish(declared.narHash);

  const wrongHash = new NarVerifier({ ...declared, narHash: sha256(new Uint8Array(1)) }, { bytes: "chunks" });
  wrongHash.write(nar);
  assert.throws(() => wrongHash.finish(), (e: unknown) => e instanceof IntegrityError && e.code === "nar.hash-mismatch" && /its chunks hash to [0-9a-f]{64}$/.test(e.message));

  const smaller = new NarVerifier({ ...declared, narSize: nar.length + 8 }, { bytes: "nar" });
  smaller.write(nar);
  assert.throws(() => smaller.finish(), (e: unknown) => e instanceof FormatError && e.code === "nar.size-mismatch" && e.message.endsWith(`the NAR has ${nar.length} bytes`));

  const larger = new NarVerifier({ ...declared, narSize: nar.length - 8 }, { bytes: "nar" });
  assert.throws(() => larger.write(nar), (e: unknown) => e instanceof FormatError && e.code === "nar.size-mismatch" && /larger than its declared NarSize/.test(e.message));

  const truncated = new NarVerifier(declared, { bytes: "nar" });
  truncated.write(nar.subarray(0, nar.length - 8));
  assert.throws(() => truncated.finish(), (e: unknown) => e instanceof FormatError && e.code === "nar.truncated");
});
