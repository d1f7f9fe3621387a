// Properties of `.ls` listings (shared/nar-listing.ts): the listing of a generated NAR formats
// and parses back to itself, its layout gives the NAR's size, and arbitrary or mutated listings
// are a FormatError or a listing that formats to a fixed point.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { FormatError } from "../../../shared/errors.ts";
import { equalNarListings, formatNarListing, narLayout, parseNarListing } from "../../../shared/nar-listing.ts";
import { listingOfNar } from "../../helpers/nar-trees.ts";
import { mutatedBytes, narTree, parsedOrTyped, runs, writeNar } from "./fuzz-helpers.ts";

test(".ls: the listing of a NAR formats and parses back to itself, and its layout is the NAR's", () => {
  fc.assert(
    fc.property(narTree, (tree) => {
      const nar = writeNar(tree);
      const listing = listingOfNar(nar);
      assert.equal(narLayout(listing.root), nar.length);
      const bytes = formatNarListing(listing);
      const parsed = parseNarListing(bytes);
      assert.ok(equalNarListings(parsed, listing));
      assert.deepEqual(formatNarListing(parsed), bytes);
    }),
    runs(300),
  );
});

/** Arbitrary bytes give a FormatError, or a listing that formats to bytes parsing to the same listing. */
function parsesToFixedPointOrFails(bytes: Uint8Array): void {
  const listing = parsedOrTyped(() => parseNarListing(bytes), FormatError);
  if (listing === undefined) return;
  const formatted = formatNarListing(listing);
  assert.ok(equalNarListings(parseNarListing(formatted), listing));
}

test(".ls: arbitrary bytes and arbitrary JSON are a FormatError", () => {
  const utf8 = new TextEncoder();
  const input = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc.json({ maxDepth: 6 }).map((j) => utf8.encode(j)),
    // Deeply nested brackets: the depth limit, not the stack, must stop them.
    fc.tuple(fc.constantFrom("[", "{\"root\":", "{\"a\":"), fc.integer({ min: 1, max: 20_000 })).map(([open, n]) => utf8.encode(open.repeat(n))),
    fc.json({ maxDepth: 3 }).map((j) => utf8.encode(`{"version":1,"root":{"type":"directory","entries":{"a":${j}}}}`)),
  );
  fc.assert(fc.property(input, parsesToFixedPointOrFails), runs(600));
});

test(".ls: mutated valid listings are a FormatError or format to a fixed point", () => {
  fc.assert(
    fc.property(narTree.chain((tree) => mutatedBytes(formatNarListing(listingOfNar(writeNar(tree))))), parsesToFixedPointOrFails),
    runs(800),
  );
});
