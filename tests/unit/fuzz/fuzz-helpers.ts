// Shared pieces of the property/fuzz suite (tests/unit/fuzz/*.test.ts): run parameters, the
// "parses or throws one of our typed errors" check, byte and text mutators, and generated NAR
// trees.
//
// Runs are bounded so that the whole suite stays well under 30 s on two cores. fast-check picks
// a random seed per run and prints it, with the shrunk counterexample and its path, on failure;
// replay with FC_SEED=<seed> (and FC_PATH=<path> to go straight to the failing case). FC_RUNS
// multiplies every property's run count, for a longer fuzzing session by hand.
import assert from "node:assert/strict";
import fc from "fast-check";
import { FormatError, NixcasError } from "../../../shared/errors.ts";
import { NarEventWriter } from "../../../shared/nar-writer.ts";
import { bytesToByteString, type NarDirectory, type NarFile, type NarSymlink } from "../../../shared/nar.ts";
import { concatBytes } from "../../helpers/nar-trees.ts";

/** One parse of one input may take this long at most: a generous bound that still catches a hang or a quadratic blow-up. */
const RUN_TIME_LIMIT_MS = 2000;

function envInteger(name: string): number | undefined {
  const text = process.env[name];
  if (text === undefined || text === "") return undefined;
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error(`${name}=${text} is not an integer`);
  return n;
}

/** fast-check parameters for a property of `numRuns` runs (see the header for FC_SEED, FC_PATH, FC_RUNS). */
export function runs<T>(numRuns: number, extra: fc.Parameters<T> = {}): fc.Parameters<T> {
  const params: fc.Parameters<T> = { numRuns: numRuns * (envInteger("FC_RUNS") ?? 1), ...extra };
  const seed = envInteger("FC_SEED");
  if (seed !== undefined) params.seed = seed;
  if (process.env.FC_PATH) params.path = process.env.FC_PATH;
  return params;
}

type ErrorClass = abstract new (...args: never[]) => NixcasError;

function checkTyped(err: unknown, allowed: readonly ErrorClass[]): void {
  if (!allowed.some((c) => err instanceof c)) throw err;
  const e = err as NixcasError;
  assert.match(e.code, /^[a-z][a-zA-Z0-9-]*(\.[a-zA-Z0-9-]+)*$/, `error code ${JSON.stringify(e.code)}`);
  assert.ok(e.message.length > 0, "an error message");
}

/**
 * `parse()`'s result, or undefined when it threw one of the `allowed` error classes (with a
 * code and a message). Anything else it throws (TypeError, RangeError, a plain Error) fails the
 * property; so does a call that takes longer than RUN_TIME_LIMIT_MS.
 */
export function parsedOrTyped<T>(parse: () => T, ...allowed: ErrorClass[]): T | undefined {
  const started = performance.now();
  let outcome: Outcome<T>;
  try {
    outcome = { value: parse() };
  } catch (error) {
    outcome = { error };
  }
  return judged(outcome, started, allowed);
}

/** parsedOrTyped for async parsers (`async` functions: they reject, they do not throw). */
export async function parsedOrTypedAsync<T>(parse: () => Promise<T>, ...allowed: ErrorClass[]): Promise<T | undefined> {
  const started = performance.now();
  const outcome = await parse().then(
    (value): Outcome<T> => ({ value }),
    (error: unknown): Outcome<T> => ({ error }),
  );
  return judged(outcome, started, allowed);
}

/** Canonical text formats: `value` formats to a text that parses to `value` and formats back to itself. Returns the text. */
export function assertTextRoundTrip<T>(value: T, format: (value: T) => string, parse: (text: string) => T): string {
  const text = format(value);
  const parsed = parse(text);
  assert.deepEqual(parsed, value);
  assert.equal(format(parsed), text);
  return text;
}

/** Arbitrary text is a FormatError, or parses to what formats back to exactly that text. */
export function assertCanonicalOrRefused<T>(text: string, parse: (text: string) => T, format: (value: T) => string): void {
  const parsed = parsedOrTyped(() => parse(text), FormatError);
  if (parsed !== undefined) assert.equal(format(parsed), text);
}

type Outcome<T> = { value: T } | { error: unknown };

/** The rules of parsedOrTyped, for a parse that started at `started` and ended with `outcome`. */
function judged<T>(outcome: Outcome<T>, started: number, allowed: ErrorClass[]): T | undefined {
  const took = performance.now() - started;
  assert.ok(took < RUN_TIME_LIMIT_MS, `one parse took ${took.toFixed(0)} ms`);
  if ("value" in outcome) return outcome.value;
  checkTyped(outcome.error, allowed);
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Mutations

/** Length values that make parsers misbehave: zero, off by one, 32-bit edges, beyond 2^53. */
const INTERESTING_U64: readonly bigint[] = [0n, 1n, 7n, 8n, 255n, 256n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n];

type ByteMutation = (b: Uint8Array) => Uint8Array;

const byteMutation: fc.Arbitrary<ByteMutation> = fc.oneof(
  fc.record({ at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }).map(({ at, bit }) => (b: Uint8Array) => {
    if (b.length === 0) return b;
    const out = b.slice();
    out[at % b.length] = out[at % b.length]! ^ (1 << bit);
    return out;
  }),
  fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }).map(({ at, value }) => (b: Uint8Array) => {
    if (b.length === 0) return b;
    const out = b.slice();
    out[at % b.length] = value;
    return out;
  }),
  fc.record({ at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }).map(({ at, bytes }) => (b: Uint8Array) => {
    const i = at % (b.length + 1);
    return concatBytes([b.subarray(0, i), bytes, b.subarray(i)]);
  }),
  fc.record({ at: fc.nat(), length: fc.integer({ min: 1, max: 24 }) }).map(({ at, length }) => (b: Uint8Array) => {
    const i = at % (b.length + 1);
    return concatBytes([b.subarray(0, i), b.subarray(i + length)]);
  }),
  fc.nat().map((at) => (b: Uint8Array) => b.subarray(0, at % (b.length + 1))),
  fc.record({ from: fc.nat(), to: fc.nat(), length: fc.integer({ min: 1, max: 32 }) }).map(({ from, to, length }) => (b: Uint8Array) => {
    // A piece of the input repeated elsewhere: duplicated tokens, entries, frames.
    const i = from % (b.length + 1);
    const j = to % (b.length + 1);
    return concatBytes([b.subarray(0, j), b.subarray(i, i + length), b.subarray(j)]);
  }),
  fc.record({ at: fc.nat(), value: fc.constantFrom(...INTERESTING_U64) }).map(({ at, value }) => (b: Uint8Array) => {
    // A little-endian u64 at an 8-aligned offset (NAR length fields) or anywhere.
    if (b.length < 8) return b;
    const out = b.slice();
    const i = at % (b.length - 7);
    new DataView(out.buffer, out.byteOffset).setBigUint64(at % 2 === 0 ? i - (i % 8) : i, value, true);
    return out;
  }),
);

/** `valid` with one to four random edits (bit flips, byte sets, inserts, deletes, cuts, repeats, hostile u64s). */
export function mutatedBytes(valid: Uint8Array): fc.Arbitrary<Uint8Array> {
  return fc.array(byteMutation, { minLength: 1, maxLength: 4 }).map((ms) => ms.reduce((b, m) => m(b), valid));
}

/** Characters that matter to text formats: separators, quotes, escapes, line ends, odd Unicode. */
const INTERESTING_CHARS = ["\n", "\r", "\t", " ", ":", ",", ";", "\"", "\\", "(", ")", "[", "]", "{", "}", "!", "-", "/", ".", "=", "\0", "\x7f", "é", "\u2028", "\ud83d\ude00", "\ud800", "0", "9", "z"];

type TextMutation = (s: string) => string;

const textMutation: fc.Arbitrary<TextMutation> = fc.oneof(
  fc.record({ at: fc.nat(), c: fc.oneof(fc.constantFrom(...INTERESTING_CHARS), fc.string({ minLength: 1, maxLength: 8, unit: "binary" })) }).map(({ at, c }) => (s: string) => {
    const i = at % (s.length + 1);
    return s.slice(0, i) + c + s.slice(i);
  }),
  fc.record({ at: fc.nat(), length: fc.integer({ min: 1, max: 12 }) }).map(({ at, length }) => (s: string) => {
    const i = at % (s.length + 1);
    return s.slice(0, i) + s.slice(i + length);
  }),
  fc.record({ at: fc.nat(), c: fc.constantFrom(...INTERESTING_CHARS) }).map(({ at, c }) => (s: string) => {
    if (s.length === 0) return s;
    const i = at % s.length;
    return s.slice(0, i) + c + s.slice(i + 1);
  }),
  fc.nat().map((at) => (s: string) => s.slice(0, at % (s.length + 1))),
  fc.record({ from: fc.nat(), to: fc.nat(), length: fc.integer({ min: 1, max: 80 }) }).map(({ from, to, length }) => (s: string) => {
    const i = from % (s.length + 1);
    const j = to % (s.length + 1);
    return s.slice(0, j) + s.slice(i, i + length) + s.slice(j);
  }),
);

/** `valid` with one to four random text edits (inserts of separators and odd characters, deletes, replacements, cuts, repeats). */
export function mutatedText(valid: string): fc.Arbitrary<string> {
  return fc.array(textMutation, { minLength: 1, maxLength: 4 }).map((ms) => ms.reduce((s, m) => m(s), valid));
}

/** How to cut an input into the pieces a stream delivers: sizes cycled, 1 byte up to a few KiB. */
export const pieceSizes: fc.Arbitrary<number[]> = fc.array(fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 4096 })), { minLength: 1, maxLength: 6 });

/** `data` cut into pieces of the given sizes (cycled). */
export function cut(data: Uint8Array, sizes: readonly number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0, i = 0; at < data.length; i++) {
    const n = sizes[i % sizes.length]!;
    out.push(data.subarray(at, at + n));
    at += n;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// NAR trees

/** A file-system tree as a NAR holds it; the shape of tests/helpers/nar-trees.ts's Tree that treeFromNar returns. */
export type GenTree = { file: Uint8Array; executable: boolean } | { symlink: Uint8Array } | { dir: Array<[Uint8Array, GenTree]> };

/** An entry name: 1..12 bytes, no NUL or '/', not "." or ".."; sometimes not UTF-8. */
const nameByte = fc.integer({ min: 1, max: 254 }).map((b) => (b >= 0x2f ? b + 1 : b));
const entryName: fc.Arbitrary<Uint8Array> = fc
  .oneof(
    fc.array(fc.constantFrom(...Array.from("abcdefghijklmnopqrstuvwxyz0123456789.-_+~", (c) => c.charCodeAt(0))), { minLength: 1, maxLength: 8 }),
    fc.array(nameByte, { minLength: 1, maxLength: 12 }),
  )
  .map((codes) => Uint8Array.from(codes))
  .filter((n) => !(n[0] === 0x2e && (n.length === 1 || (n.length === 2 && n[1] === 0x2e))));

const contents = fc.oneof({ weight: 4, arbitrary: fc.uint8Array({ maxLength: 40 }) }, { weight: 1, arbitrary: fc.uint8Array({ minLength: 100, maxLength: 3000 }) });
const symlinkTarget = fc.array(fc.integer({ min: 1, max: 255 }), { minLength: 1, maxLength: 40 }).map((codes) => Uint8Array.from(codes));

export const narTree: fc.Arbitrary<GenTree> = fc.letrec<{ tree: GenTree }>((tie) => ({
  tree: fc.oneof(
    { depthSize: "medium", withCrossShrink: true },
    fc.record({ file: contents, executable: fc.boolean() }, { noNullPrototype: true }),
    fc.record({ symlink: symlinkTarget }, { noNullPrototype: true }),
    fc.record({
      dir: fc
        .uniqueArray(fc.tuple(entryName, tie("tree")), { maxLength: 6, selector: ([name]) => bytesToByteString(name) })
        .map((entries) => entries.sort(([a], [b]) => Buffer.compare(a, b))),
    }, { noNullPrototype: true }),
  ),
})).tree;

/** A NAR written by shared/nar-writer.ts's NarEventWriter, fed the tree's events by hand. */
export function writeNar(tree: GenTree): Uint8Array {
  const pieces: Uint8Array[] = [];
  const writer = new NarEventWriter((p) => pieces.push(p.slice()), 256);
  const walk = (t: GenTree, name: Uint8Array, path: string, depth: number): void => {
    const info = { path, name: bytesToByteString(name), depth, offset: 0 };
    if ("file" in t) {
      const file: NarFile = { ...info, type: "regular", executable: t.executable, size: t.file.length, narOffset: 0 };
      writer.file(file);
      if (t.file.length > 0) writer.fileData(t.file);
      writer.fileEnd(file);
    } else if ("symlink" in t) {
      const link: NarSymlink = { ...info, type: "symlink", target: bytesToByteString(t.symlink) };
      writer.symlink(link);
    } else {
      const dir: NarDirectory = { ...info, type: "directory" };
      writer.directory(dir);
      for (const [childName, child] of t.dir) {
        const childPath = (path === "/" ? "/" : `${path}/`) + bytesToByteString(childName);
        walk(child, childName, childPath, depth + 1);
      }
      writer.directoryEnd(dir);
    }
  };
  walk(tree, new Uint8Array(0), "/", 0);
  writer.finish();
  return concatBytes(pieces);
}
