// Properties of the .drv ATerm parser and writer (shared/derivation.ts): generated derivations
// of every output kind format and parse back to themselves (as text and as UTF-8 bytes), and
// for every text the parser accepts, writing it back gives exactly that text (the parser's
// documented invariant), also for mutated and arbitrary text, which is otherwise a FormatError.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { compareCodePoints, formatDerivation, parseDerivation, type DerivationOutput, type ParsedDerivation } from "../../../shared/derivation.ts";
import { FormatError } from "../../../shared/errors.ts";
import { assertCanonicalOrRefused, assertTextRoundTrip, mutatedText, parsedOrTyped, runs } from "./fuzz-helpers.ts";
import { STORE_DIR, hashAlgorithm, hashOf, storePath, storePathName } from "./nix-arbitraries.ts";

const outputName = fc.constantFrom("out", "dev", "lib", "bin", "doc", "man", "static", "debug");
const sortedUnique = (xs: string[]): string[] => [...new Set(xs)].sort(compareCodePoints);
const sortedMap = <V>(entries: Array<[string, V]>): Map<string, V> => new Map([...new Map(entries)].sort((a, b) => compareCodePoints(a[0], b[0])));

/** Any text Nix may put in a string: quotes, backslashes, line ends, tabs, any Unicode. */
const anyText = fc.oneof(fc.string({ unit: "grapheme", maxLength: 30 }), fc.string({ unit: fc.constantFrom("\"", "\\", "\n", "\r", "\t", "a", " ", "é", "😀"), maxLength: 12 }));

const outputs: fc.Arbitrary<Map<string, DerivationOutput>> = fc.oneof(
  // input-addressed
  fc.uniqueArray(fc.tuple(outputName, storePath), { minLength: 1, maxLength: 4, selector: ([n]) => n }).map((os) => sortedMap(os.map(([n, path]) => [n, { path, hashAlgo: "", hash: "" }]))),
  // fixed: one output named "out"
  fc.tuple(storePath, fc.constantFrom("", "r:"), hashAlgorithm).chain(([path, method, algo]) =>
    hashOf(algo).map((h) => new Map([["out", { path, hashAlgo: `${method}${algo}`, hash: Buffer.from(h.digest).toString("hex") }]])),
  ),
  // floating content-addressed
  fc.tuple(fc.uniqueArray(outputName, { minLength: 1, maxLength: 3 }), fc.constantFrom("r:sha256", "text:sha256", "sha256", "r:sha512")).map(([names, algo]) =>
    sortedMap(names.map((n) => [n, { path: "", hashAlgo: algo, hash: "" }])),
  ),
  // deferred
  fc.uniqueArray(outputName, { minLength: 1, maxLength: 3 }).map((names) => sortedMap(names.map((n) => [n, { path: "", hashAlgo: "", hash: "" }]))),
);

/** A .drv store path (its name cut to 20 characters, so that ".drv" keeps it within the limit). */
const drvPath = storePath.map((p) => `${p.slice(0, STORE_DIR.length + 1 + 32 + 1 + 20)}.drv`);

const derivation: fc.Arbitrary<ParsedDerivation> = fc
  .record({
    name: storePathName,
    outputs,
    inputDrvs: fc.array(fc.tuple(drvPath, fc.array(outputName, { minLength: 1, maxLength: 3 })), { maxLength: 3 }).map((ds) => sortedMap(ds.map(([p, ns]) => [p, sortedUnique(ns)]))),
    inputSrcs: fc.array(storePath, { maxLength: 3 }).map(sortedUnique),
    system: anyText,
    builder: anyText,
    args: fc.array(anyText, { maxLength: 4 }),
    env: fc.array(fc.tuple(anyText, anyText), { maxLength: 5 }),
  })
  .map(({ name, env, ...rest }) => ({ ...rest, name, env: sortedMap([...env.filter(([k]) => k !== "name"), ["name", name]]) }));

test("derivations: format → parse gives the derivation back, as text and as UTF-8 bytes", () => {
  fc.assert(
    fc.property(derivation, (d) => {
      const text = assertTextRoundTrip(d, formatDerivation, parseDerivation);
      assert.deepEqual(parseDerivation(new TextEncoder().encode(text)), d);
    }),
    runs(300),
  );
});

/** A FormatError, or a derivation that is written back as exactly `text`. */
function parsesToItselfOrFails(text: string): void {
  assertCanonicalOrRefused(text, parseDerivation, formatDerivation);
}

test("derivations: mutated .drv text is a FormatError or written back identically", () => {
  fc.assert(fc.property(derivation.chain((d) => mutatedText(formatDerivation(d))), parsesToItselfOrFails), runs(1000));
});

test("derivations: arbitrary text and bytes are a FormatError", () => {
  const aterm = fc.array(fc.constantFrom("Derive(", "[", "]", "(", ")", ",", "\"", "\"out\"", "\"\"", "\\", STORE_DIR, "x"), { maxLength: 40 }).map((parts) => parts.join(""));
  fc.assert(
    fc.property(fc.oneof(fc.string({ unit: "binary", maxLength: 200 }), aterm, aterm.map((t) => `Derive(${t}`)), parsesToItselfOrFails),
    runs(600),
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => void parsedOrTyped(() => parseDerivation(bytes), FormatError)),
    runs(300),
  );
});
