// `nixcas.ingest.block`: the ingester stores a client's block only after verifying it (one zstd
// frame of the declared size whose sha256 is the CID), and refuses anything else with a precise
// error that keeps its class across NATS; a refused block leaves nothing in BLOCKS.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { headers as natsHeaders } from "@nats-io/nats-core";
import type { CID } from "multiformats/cid";
import { encode as encodeCbor } from "@ipld/dag-cbor";
import { cidForBytes, DAG_CBOR_CODEC } from "../../shared/cid.ts";
import { FormatError, IntegrityError, NixcasError } from "../../shared/errors.ts";
import { encodeIngestBlockRequest, INGEST_BLOCK_HEADERS, INGEST_BLOCK_MAX_SIZE } from "../../shared/nats/ingest-protocol.ts";
import { requestService } from "../../shared/nats/service.ts";
import { SUBJECTS } from "../../shared/nats/subjects.ts";
import { STREAMS } from "../../shared/nats/topology.ts";
import { compressChunk } from "../../shared/zstd.ts";
import { silentLogger } from "../../shared/log.ts";
import { BlockIntake } from "../../services/ingester/block-intake.ts";
import { pseudoRandomBytes } from "../helpers/nar-trees.ts";
import { startPipeline, type Pipeline } from "../helpers/pipeline.ts";

let p: Pipeline;

before(async () => {
  p = await startPipeline({ services: ["ingester"] });
});
after(async () => {
  await p?.stop();
});

const stored = () => p.messages(STREAMS.blocks);

/** Sends a request and returns the error it was refused with (fails if it was not). */
async function refusal(send: Promise<unknown>): Promise<NixcasError> {
  try {
    await send;
  } catch (err) {
    assert.ok(err instanceof NixcasError, `a NixcasError, got ${String(err)}`);
    return err;
  }
  assert.fail("the request was accepted");
}

/** Asserts that `send` is refused with `code` and class `kind`, and that BLOCKS gained nothing. */
async function assertRefused(send: () => Promise<unknown>, kind: typeof FormatError | typeof IntegrityError, code: string, cid?: CID): Promise<NixcasError> {
  const before = await stored();
  const err = await refusal(send());
  assert.equal(err.code, code, err.message);
  assert.ok(err instanceof kind, `${err.name}: ${err.message}`);
  assert.equal(await stored(), before, "nothing stored");
  if (cid) assert.equal(await p.blocks.has(cid), false, `nothing under ${cid}`);
  return err;
}

describe("nixcas.ingest.block", () => {
  test("a good chunk is stored once; sent again it is a dedup hit", async () => {
    const bytes = pseudoRandomBytes(70_000, 1);
    const cid = cidForBytes(bytes);
    const before = await stored();
    assert.equal(await p.client.putBlock(cid, compressChunk(bytes), bytes.length), "stored");
    assert.equal(await p.client.putBlock(cid, compressChunk(bytes), bytes.length), "duplicate");
    assert.equal(await stored(), before + 1);
    assert.ok(Buffer.from((await p.blocks.get(cid))!).equals(bytes), "the stored block reads back");
  });

  test("a manifest node (dag-cbor) is stored too", async () => {
    const bytes = encodeCbor({ node: "of a manifest", n: 1 });
    const cid = cidForBytes(bytes, DAG_CBOR_CODEC);
    assert.equal(await p.client.putBlock(cid, compressChunk(bytes), bytes.length), "stored");
    assert.ok(Buffer.from((await p.blocks.get(cid))!).equals(bytes), "the stored block reads back");
  });

  test("a frame of other bytes than the CID names: block.unverified, nothing stored", async () => {
    const claimed = cidForBytes(pseudoRandomBytes(4096, 2));
    const other = pseudoRandomBytes(4096, 3);
    const err = await assertRefused(() => p.client.putBlock(claimed, compressChunk(other), other.length), IntegrityError, "block.unverified", claimed);
    assert.match(err.message, new RegExp(claimed.toString()));
  });

  test("an undecodable frame, or one of another size than declared: block.unverified", async () => {
    const bytes = pseudoRandomBytes(4096, 4);
    const cid = cidForBytes(bytes);
    await assertRefused(() => p.client.putBlock(cid, pseudoRandomBytes(3000, 5), bytes.length), IntegrityError, "block.unverified", cid);
    const frame = compressChunk(bytes);
    await assertRefused(() => p.client.putBlock(cid, frame.subarray(0, frame.length - 10), bytes.length), IntegrityError, "block.unverified", cid);
    await assertRefused(() => p.client.putBlock(cid, frame, bytes.length - 1), IntegrityError, "block.unverified", cid);
    // Two frames in one message: the strict reader takes exactly one.
    const twice = Buffer.concat([frame, compressChunk(new Uint8Array(0))]);
    await assertRefused(() => p.client.putBlock(cid, twice, bytes.length), IntegrityError, "block.unverified", cid);
  });

  test("over the size limit: ingest.block-too-large, before anything is decoded", async () => {
    const big = new Uint8Array(INGEST_BLOCK_MAX_SIZE + 1);
    const cid = cidForBytes(big);
    await assertRefused(() => p.client.putBlock(cid, compressChunk(big), big.length), FormatError, "ingest.block-too-large", cid);
    // A frame padded beyond what any encoder makes for its content.
    const small = pseudoRandomBytes(1000, 6);
    const padded = cidForBytes(small);
    await assertRefused(() => p.client.putBlock(padded, new Uint8Array(200_000), small.length), FormatError, "ingest.block-too-large", padded);
  });

  test("missing or malformed headers, and CIDs that cannot name a block: ingest.block-request", async () => {
    const bytes = pseudoRandomBytes(100, 7);
    const frame = compressChunk(bytes);
    const cid = cidForBytes(bytes);
    const send = (h: Record<string, string>) => () => {
      const headers = natsHeaders();
      for (const [k, v] of Object.entries(h)) headers.set(k, v);
      return requestService(p.nc, SUBJECTS.ingestBlock, frame, { headers });
    };
    const size = String(bytes.length);
    await assertRefused(send({ [INGEST_BLOCK_HEADERS.size]: size }), FormatError, "ingest.block-request");
    await assertRefused(send({ [INGEST_BLOCK_HEADERS.cid]: cid.toString() }), FormatError, "ingest.block-request");
    await assertRefused(send({ [INGEST_BLOCK_HEADERS.cid]: "not-a-cid", [INGEST_BLOCK_HEADERS.size]: size }), FormatError, "ingest.block-request");
    await assertRefused(send({ [INGEST_BLOCK_HEADERS.cid]: cid.toString(), [INGEST_BLOCK_HEADERS.size]: "-1" }), FormatError, "ingest.block-request");
    // CIDv0 (dag-pb): not a codec blocks are stored under.
    await assertRefused(send({ [INGEST_BLOCK_HEADERS.cid]: "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", [INGEST_BLOCK_HEADERS.size]: size }), FormatError, "ingest.block-request");
    assert.equal(await p.blocks.has(cid), false);
  });
});

describe("the ingester's block intake budget", () => {
  test("past its budget a block is answered ingest.busy at once, and is taken once there is room", async () => {
    const intake = new BlockIntake({ blocks: p.blocks, logger: silentLogger, budgetBytes: 150_000 });
    const requests = [0, 1, 2, 3].map((i) => {
      const bytes = pseudoRandomBytes(100_000, 100 + i);
      return encodeIngestBlockRequest({ cid: cidForBytes(bytes), frame: compressChunk(bytes), size: bytes.length });
    });
    const outcomes = await Promise.allSettled(requests.map((r) => intake.ingest(r.data, r.headers)));
    assert.equal(outcomes[0]!.status, "fulfilled", "the first block fits");
    const busy = outcomes.slice(1).map((o) => (o.status === "rejected" ? (o.reason as NixcasError).code : "accepted"));
    assert.deepEqual(busy, ["ingest.busy", "ingest.busy", "ingest.busy"], "each further one would pass the budget");
    for (const r of requests.slice(1)) assert.equal((await intake.ingest(r.data, r.headers)).result, "stored", "taken when the intake is free again");
  });
});
