// Streams the bytes a manifest describes (a NAR, a listing, a log) into an HTTP response:
// chunks read pipelined and verified (chunk-reader.ts, block-loader.ts), written with
// backpressure. "frames" sends the stored zstd frames as they are (their concatenation is one
// valid zstd stream); "bytes" sends the decompressed chunks, optionally only a byte range.
//
// A block that fails verification mid-stream throws: the caller then destroys the socket, so the
// client sees a cut transfer — never wrong bytes.
import type { ServerResponse } from "node:http";
import type { CID } from "multiformats/cid";
import { IntegrityError } from "../../shared/errors.ts";
import { decodeManifest, walkManifest, type Manifest } from "../../shared/manifest.ts";
import { decompressChunk } from "../../shared/zstd.ts";
import { readChunks } from "./chunk-reader.ts";
import type { Gateway, GatewayRequest } from "./context.ts";
import { HttpError } from "./http-errors.ts";

/** A client that reads nothing for this long while we have data for it is dropped. */
export const DRAIN_TIMEOUT_MS = 120_000;

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive. */
  end: number;
}

/** Loads and decodes a manifest root (verified; cached hot like any block). */
export async function loadManifest(gw: Gateway, root: CID): Promise<Manifest> {
  return decodeManifest(await gw.loader.bytes(root), root);
}

/**
 * Streams the manifest's bytes into the response and ends it. `expectedLength`: the body length
 * already promised in Content-Length; the stream is cut (IntegrityError) rather than send more or
 * fewer bytes than that.
 */
export async function streamManifest(
  gw: Gateway,
  rq: GatewayRequest,
  root: CID,
  options: { mode: "frames" | "bytes"; range?: ByteRange; expectedLength?: number },
): Promise<void> {
  const { res, signal } = rq;
  const expected = options.expectedLength;
  let sent = 0;
  try {
    for await (const piece of manifestPieces(gw, rq, root, options)) {
      if (signal.aborted) return;
      if (expected !== undefined && sent + piece.length > expected) throw lengthMismatch(root, expected, `more than ${sent + piece.length}`);
      if (piece.length > 0) await write(res, piece, signal);
      sent += piece.length;
    }
    if (signal.aborted) return;
    if (expected !== undefined && sent !== expected) throw lengthMismatch(root, expected, String(sent));
    res.end();
  } catch (err) {
    if (err instanceof IntegrityError && err.code === "nar.length-mismatch") gw.metrics.integrityErrors.inc({ route: rq.route });
    throw err;
  } finally {
    gw.metrics.bytesServed.inc({ route: rq.route }, sent);
  }
}

function lengthMismatch(root: CID, expected: number, actual: string): IntegrityError {
  return new IntegrityError("nar.length-mismatch", `manifest ${root}: the stored frames add up to ${actual} bytes, ${expected} were recorded (and promised in Content-Length)`);
}

/**
 * The pieces of the bytes a manifest describes, in order, each verified before it is yielded:
 * stored frames ("frames") or decompressed chunks ("bytes", optionally a byte range). Stops
 * without error when `rq.signal` aborts.
 */
export async function* manifestPieces(
  gw: Gateway,
  rq: GatewayRequest,
  root: CID,
  options: { mode: "frames" | "bytes"; range?: ByteRange },
): AsyncGenerator<Uint8Array> {
  const { signal } = rq;
  const range = options.range;
  try {
    const chunks = walkManifest(root, (cid) => gw.loader.bytes(cid), range ? { from: range.start } : {});
    for await (const { chunk, block } of readChunks(chunks, gw.loader, undefined, signal, gw.readBudget)) {
      if (signal.aborted) return;
      let piece: Uint8Array;
      if (options.mode === "frames") {
        piece = block.frame;
      } else {
        piece = block.bytes ?? (await decompressChunk(block.frame, block.size));
        if (range) {
          const from = Math.max(range.start - chunk.offset, 0);
          const to = Math.min(range.end + 1 - chunk.offset, piece.length);
          if (to <= 0) break;
          piece = piece.subarray(from, to);
        }
      }
      yield piece;
      if (range && chunk.offset + chunk.size > range.end) break;
    }
  } catch (err) {
    if (err instanceof IntegrityError) gw.metrics.integrityErrors.inc({ route: rq.route });
    throw err;
  }
}

/** Writes with backpressure; gives up on a client that stopped reading. */
export async function write(res: ServerResponse, piece: Uint8Array, signal: AbortSignal): Promise<void> {
  if (res.write(piece)) return;
  await new Promise<void>((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      res.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(() => {
      res.off("drain", done);
      signal.removeEventListener("abort", done);
      reject(new HttpError(408, "http.client-stalled", `client read nothing for ${DRAIN_TIMEOUT_MS / 1000} s`));
    }, DRAIN_TIMEOUT_MS);
    res.once("drain", done);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Parses a `Range` header for a body of `size` bytes: one range `a-b`, `a-` or `-n`.
 * Returns null when the header should be ignored (absent, several ranges, not bytes), and throws
 * 416 when it cannot be satisfied.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | null {
  if (header === undefined) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return null;
  let start: number;
  let end: number;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0) throw unsatisfiable(size);
    start = Math.max(size - suffix, 0);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (end < start && m[2] !== "") return null; // syntactically invalid: ignore (RFC 9110 §14.2)
  }
  if (start >= size) throw unsatisfiable(size);
  return { start, end };
}

function unsatisfiable(size: number): HttpError {
  return new HttpError(416, "http.range", `range not satisfiable (size ${size})`, { headers: { "Content-Range": `bytes */${size}` } });
}
