// The gateway's `Range` parsing for `nar/<NarHash>.nar` (services/gateway/manifest-stream.ts).
// Nix resumes a cut download with `Range: bytes=<received>-` and fails if the answer is not the
// tail it asked for (docs/nix-protocol.md §8.4), so every form a client may send is pinned here:
// the ones served as 206, the ones ignored (full 200 body), and the ones answered 416.
import { test } from "node:test";
import assert from "node:assert/strict";
import { HttpError } from "../../services/gateway/http-errors.ts";
import { parseRange } from "../../services/gateway/manifest-stream.ts";

const SIZE = 864; // the NAR of docs/nix-protocol.md §12.5 (b)

function assertUnsatisfiable(header: string, size: number): void {
  assert.throws(
    () => parseRange(header, size),
    (err: unknown) =>
      err instanceof HttpError &&
      err.status === 416 &&
      err.code === "http.range" &&
      err.headers["Content-Range"] === `bytes */${size}` &&
      err.message.includes(`size ${size}`),
    `${header} on ${size} bytes must be 416 with Content-Range bytes */${size}`,
  );
}

test("no Range header: the whole body", () => {
  assert.equal(parseRange(undefined, SIZE), null);
});

test("Nix's resume form `bytes=<received>-` gives the tail", () => {
  assert.deepEqual(parseRange("bytes=232-", SIZE), { start: 232, end: SIZE - 1 });
  assert.deepEqual(parseRange("bytes=0-", SIZE), { start: 0, end: SIZE - 1 });
  assert.deepEqual(parseRange(`bytes=${SIZE - 1}-`, SIZE), { start: SIZE - 1, end: SIZE - 1 });
});

test("a closed range is inclusive at both ends", () => {
  assert.deepEqual(parseRange("bytes=0-0", SIZE), { start: 0, end: 0 });
  assert.deepEqual(parseRange("bytes=100-199", SIZE), { start: 100, end: 199 });
});

test("an end past the body is cut to the last byte", () => {
  assert.deepEqual(parseRange("bytes=800-100000", SIZE), { start: 800, end: SIZE - 1 });
  assert.deepEqual(parseRange(`bytes=0-${SIZE}`, SIZE), { start: 0, end: SIZE - 1 });
});

test("a suffix range `-n` gives the last n bytes, all of them when n exceeds the body", () => {
  assert.deepEqual(parseRange("bytes=-64", SIZE), { start: SIZE - 64, end: SIZE - 1 });
  assert.deepEqual(parseRange(`bytes=-${SIZE}`, SIZE), { start: 0, end: SIZE - 1 });
  assert.deepEqual(parseRange("bytes=-100000", SIZE), { start: 0, end: SIZE - 1 });
});

test("surrounding whitespace is tolerated", () => {
  assert.deepEqual(parseRange("  bytes=1-2 ", SIZE), { start: 1, end: 2 });
});

test("headers that are ignored (answered with the full body, as RFC 9110 §14.2 allows)", () => {
  for (const header of [
    "", // empty
    "bytes=-", // neither end
    "bytes=5-3", // last before first: syntactically invalid
    "bytes=0-1,5-6", // several ranges: not supported, so not advertised as such
    "bytes=0-1, 5-6",
    "items=0-1", // another unit
    "bytes 0-1",
    "bytes=a-b",
    "bytes=1.5-2",
    "bytes=0x10-",
    "Bytes=0-1",
  ]) {
    assert.equal(parseRange(header, SIZE), null, JSON.stringify(header));
  }
});

test("ranges that start at or past the end, and `-0`, are 416", () => {
  assertUnsatisfiable(`bytes=${SIZE}-`, SIZE);
  assertUnsatisfiable("bytes=100000-", SIZE);
  assertUnsatisfiable("bytes=-0", SIZE);
});

test("an empty body satisfies no range", () => {
  assertUnsatisfiable("bytes=0-", 0);
  assertUnsatisfiable("bytes=-5", 0);
  assert.equal(parseRange(undefined, 0), null);
  assert.equal(parseRange("bytes=0-1,2-3", 0), null);
});

test("offsets beyond 2^32 (large NARs) are exact", () => {
  const size = 6 * 2 ** 30 + 7; // 6 GiB + 7
  assert.deepEqual(parseRange("bytes=4294967296-", size), { start: 2 ** 32, end: size - 1 });
  assert.deepEqual(parseRange("bytes=-7", size), { start: size - 7, end: size - 1 });
});
