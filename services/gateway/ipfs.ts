// GET|HEAD /ipfs/<cid>: the IPFS trustless-gateway responses, without any IPFS dependency.
//   application/vnd.ipld.raw (Accept or ?format=raw): one block's bytes, verified. A raw CID of
//     a whole NAR (the NAR hash in CID spelling, shared/cid.ts) that is not a block itself is
//     served as the NAR, so `/ipfs/<narCid>` hashes to its CID like any raw block.
//   application/vnd.ipld.car (Accept or ?format=car): CARv1 with the block as root; when the block
//     is a manifest (a NAR, a log, a listing), the whole DAG in depth-first pre-order (the
//     trustless-gateway order: `dag-scope=all`, `order=dfs`), so a client can verify every
//     block as it arrives.
// Without either, 406: a trustless gateway never guesses a deserialised format.
import { encode as encodeCbor } from "@ipld/dag-cbor";
import type { CID } from "multiformats/cid";
import { hasSha256Multihash, parseCid, RAW_CODEC } from "../../shared/cid.ts";
import { NixcasError } from "../../shared/errors.ts";
import { decodeManifest, walkManifest, type ManifestChunk } from "../../shared/manifest.ts";
import { encodeNixBase32 } from "../../shared/nixbase32.ts";
import { decompressChunk } from "../../shared/zstd.ts";
import { readChunks } from "./chunk-reader.ts";
import type { Gateway, GatewayRequest, Handler } from "./context.ts";
import { HttpError, badRequest, notFound } from "./http-errors.ts";
import { write } from "./manifest-stream.ts";
import { serveNarFromManifest } from "./nar-serve.ts";

const RAW = "application/vnd.ipld.raw";
const CAR = "application/vnd.ipld.car";
const IMMUTABLE = "public, max-age=29030400, immutable";

export const serveIpfs: Handler = async (gw, rq) => {
  await gw.authorize(rq.req, "pull");
  const text = rq.params[0]!;
  let cid: CID;
  try {
    cid = parseCid(text);
  } catch (err) {
    throw badRequest("ipfs.cid", (err as Error).message, err);
  }
  if (!hasSha256Multihash(cid)) throw notFound(`/ipfs/${text} (only sha2-256 CIDs are stored)`);
  const format = requestedFormat(rq);
  if (format === "raw") return serveRaw(gw, rq, cid);
  return serveCar(gw, rq, cid);
};

function requestedFormat(rq: GatewayRequest): "raw" | "car" {
  const q = rq.query.get("format");
  if (q === "raw") return "raw";
  if (q === "car") return "car";
  if (q !== null) throw new HttpError(400, "ipfs.format", `unsupported format ${JSON.stringify(q)} (raw or car)`);
  const accept = rq.req.headers.accept ?? "";
  if (accept.includes(RAW)) return "raw";
  if (accept.includes(CAR)) return "car";
  throw new HttpError(406, "ipfs.not-acceptable", `ask for ${RAW} or ${CAR} (Accept header or ?format=raw|car)`);
}

async function loadOrNull(gw: Gateway, cid: CID): Promise<Uint8Array | null> {
  try {
    return await gw.loader.bytes(cid);
  } catch (err) {
    if (err instanceof NixcasError && err.code === "block.missing") return null;
    throw err;
  }
}

async function serveRaw(gw: Gateway, rq: GatewayRequest, cid: CID): Promise<void> {
  const bytes = await loadOrNull(gw, cid);
  const headers = { "X-Content-Type-Options": "nosniff", "Cache-Control": IMMUTABLE };
  if (bytes !== null) {
    rq.res.writeHead(200, { "Content-Type": RAW, "Content-Length": String(bytes.length), ...headers });
    rq.res.end(rq.head ? undefined : bytes);
    if (!rq.head) gw.metrics.bytesServed.inc({ route: rq.route }, bytes.length);
    return;
  }
  if (cid.code === RAW_CODEC) {
    const narHash = encodeNixBase32(cid.multihash.digest);
    const root = await gw.catalog.manifestForNar(narHash);
    if (root !== null) {
      rq.res.setHeader("X-Content-Type-Options", "nosniff");
      await serveNarFromManifest(gw, rq, root, narHash, "nar", { contentType: RAW });
      return;
    }
  }
  throw notFound(`/ipfs/${cid}`);
}

async function serveCar(gw: Gateway, rq: GatewayRequest, cid: CID): Promise<void> {
  const rootBytes = await loadOrNull(gw, cid);
  if (rootBytes === null) throw notFound(`/ipfs/${cid}`);
  let isManifest = false;
  try {
    decodeManifest(rootBytes, cid);
    isManifest = true;
  } catch {
    // Any other block (a chunk, a PathInfo, an interior node): a CAR of that block alone.
  }
  rq.res.writeHead(200, { "Content-Type": `${CAR}; version=1`, "X-Content-Type-Options": "nosniff", "Cache-Control": IMMUTABLE });
  if (rq.head) return void rq.res.end();
  let sent = 0;
  const emit = async (blockCid: CID, data: Uint8Array) => {
    const piece = carBlock(blockCid, data);
    sent += piece.length;
    await write(rq.res, piece, rq.signal);
  };
  try {
    const header = encodeCbor({ roots: [cid], version: 1 });
    const head = Buffer.concat([varint(header.length), header]);
    sent += head.length;
    await write(rq.res, head, rq.signal);
    if (!isManifest) {
      await emit(cid, rootBytes);
    } else {
      // Interior nodes are reported by the walk just before the chunks under them: carry them
      // along with the next chunk so the CAR keeps depth-first pre-order.
      const nodes: CID[] = [];
      const walk = walkManifest(cid, (c) => gw.loader.bytes(c), { onNode: (c) => nodes.push(c) });
      async function* tagged(): AsyncGenerator<ManifestChunk & { before: CID[] }> {
        for await (const chunk of walk) yield { ...chunk, before: nodes.splice(0) };
      }
      for await (const { chunk, block } of readChunks(tagged(), gw.loader, undefined, rq.signal, gw.readBudget)) {
        for (const node of (chunk as ManifestChunk & { before: CID[] }).before) await emit(node, await gw.loader.bytes(node));
        await emit(chunk.cid as CID, block.bytes ?? (await decompressChunk(block.frame, block.size)));
      }
      for (const node of nodes.splice(0)) await emit(node, await gw.loader.bytes(node));
    }
    if (!rq.signal.aborted) rq.res.end();
  } finally {
    gw.metrics.bytesServed.inc({ route: rq.route }, sent);
  }
}

function carBlock(cid: CID, data: Uint8Array): Buffer {
  return Buffer.concat([varint(cid.bytes.length + data.length), cid.bytes, data]);
}

/** Unsigned LEB128, as CAR section lengths are written. */
function varint(n: number): Buffer {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return Buffer.from(out);
}
