// Per-chunk zstd. Each stored block is one zstd frame whose header carries the uncompressed
// size; frames of consecutive chunks concatenated are a valid zstd stream of the NAR, which is
// how `.nar.zst` is served without recompressing.
//
// Decompression trusts nothing in the frame: the size a block must decompress to comes from
// the caller (the manifest / block headers), output is capped at that size + 1 byte whatever
// the frame claims (a zstd bomb costs no memory), and any difference is an IntegrityError.
import buffer from "node:buffer";
import zlib from "node:zlib";
import { ConfigError, FormatError, IntegrityError } from "./errors.ts";

export const DEFAULT_ZSTD_LEVEL = 3;
/** zstd's own range (ZSTD_minCLevel … ZSTD_maxCLevel): negative levels are its fast modes, 0 its default (3). */
export const ZSTD_MIN_LEVEL = -131072;
export const ZSTD_MAX_LEVEL = 22;

const ZSTD_MAGIC = 0xfd2fb528;
/** Largest output buffer decompressChunk allocates at once (chunks are at most 768 KiB). */
const DECODE_BUFFER_MAX = 1 << 20;
const { MAX_LENGTH } = buffer.constants;
const { ZSTD_c_compressionLevel, ZSTD_c_contentSizeFlag, ZSTD_c_checksumFlag } = zlib.constants;

export function validateZstdLevel(level: number): number {
  if (!Number.isInteger(level) || level < ZSTD_MIN_LEVEL || level > ZSTD_MAX_LEVEL) {
    throw new ConfigError(`zstd level must be an integer from ${ZSTD_MIN_LEVEL} to ${ZSTD_MAX_LEVEL}, got ${String(level)}`);
  }
  return level;
}

/**
 * ZSTD_COMPRESSBOUND of zstd.h: the most bytes a one-pass compression of `size` bytes can
 * produce, frame header and block headers included.
 */
export function zstdCompressBound(size: number): number {
  const margin = size < 128 * 1024 ? (128 * 1024 - size) >> 11 : 0;
  return size + Math.floor(size / 256) + margin;
}

/**
 * One zstd frame of `bytes`, with the content size in its header and no checksum (the CID is
 * the checksum). Exactly one frame, checked: node:zlib (Node 24.21, 26.10) calls the encoder
 * again whenever its output buffer came back exactly full, and that second end-of-frame call
 * appends an empty 9-byte frame (nodejs/node#66078, denoland/deno#36689). A frame that ends
 * on a multiple of the 16 KiB default chunkSize (e.g. 32,758 random bytes at level 3) then
 * became a block the strict one-frame reader refuses. An output buffer larger than the
 * compress bound is never filled, so the encoder runs once; the frame walk afterwards makes
 * any other surprise an error here instead of an unreadable stored block.
 */
export function compressChunk(bytes: Uint8Array, level: number = DEFAULT_ZSTD_LEVEL): Uint8Array {
  validateZstdLevel(level);
  const out = zlib.zstdCompressSync(bytes, {
    params: { [ZSTD_c_compressionLevel]: level, [ZSTD_c_contentSizeFlag]: 1, [ZSTD_c_checksumFlag]: 0 },
    pledgedSrcSize: bytes.length,
    chunkSize: zstdCompressBound(bytes.length) + 1,
  });
  checkSingleFrame(out, bytes.length);
  // The result is a view of the whole output buffer; a well-compressed chunk would pin up to
  // the bound (~ the chunk's size) for as long as its frame lives, so it gets its own copy.
  return out.byteLength * 2 < out.buffer.byteLength ? Buffer.from(out) : out;
}

/** The encoder's output is one frame declaring `contentSize`, with nothing after it; IntegrityError otherwise. */
function checkSingleFrame(out: Uint8Array, contentSize: number): void {
  let length: number;
  let declared: number | null;
  try {
    length = frameLength(out);
    declared = parseFrameHeader(out).contentSize;
  } catch (err) {
    throw new IntegrityError("zstd.encoder", `the zstd encoder's output is not a well-formed frame (${(err as Error).message}); a block is exactly one frame`, { cause: err });
  }
  if (length !== out.length) {
    throw new IntegrityError("zstd.encoder", `the zstd encoder produced ${out.length} bytes: a ${length}-byte frame and ${out.length - length} more; a block is exactly one frame`);
  }
  if (declared !== contentSize) {
    throw new IntegrityError("zstd.encoder", `the zstd encoder's frame declares ${String(declared)} bytes of content for a ${contentSize}-byte chunk`);
  }
}

/** What a zstd frame header (RFC 8878 §3.1.1.1) declares. */
export interface ZstdFrameHeader {
  /** Bytes of uncompressed content, or null when the frame does not say. */
  contentSize: number | null;
  headerSize: number;
  hasChecksum: boolean;
  dictionaryId: number;
}

/** Parses the header of the zstd frame at the start of `frame`; FormatError if there is none. */
export function parseFrameHeader(frame: Uint8Array): ZstdFrameHeader {
  if (frame.length < 6) throw new FormatError("zstd.frame", `a zstd frame is at least 6 bytes, got ${frame.length}`);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const magic = view.getUint32(0, true);
  if (magic !== ZSTD_MAGIC) {
    throw new FormatError("zstd.frame", `not a zstd frame: magic number 0x${magic.toString(16).padStart(8, "0")}, expected 0x${ZSTD_MAGIC.toString(16)}`);
  }
  const descriptor = frame[4]!;
  if ((descriptor & 0x08) !== 0) throw new FormatError("zstd.frame", "zstd frame header has its reserved bit set");
  const fcsFlag = descriptor >> 6;
  const singleSegment = (descriptor & 0x20) !== 0;
  const dictFlag = descriptor & 0x03;
  let at = 5 + (singleSegment ? 0 : 1);
  const dictBytes = [0, 1, 2, 4][dictFlag]!;
  const fcsBytes = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag]!;
  const headerSize = at + dictBytes + fcsBytes;
  if (frame.length < headerSize) throw new FormatError("zstd.frame", `zstd frame header needs ${headerSize} bytes, the frame has ${frame.length}`);
  let dictionaryId = 0;
  for (let i = 0; i < dictBytes; i++) dictionaryId += frame[at + i]! * 2 ** (8 * i);
  at += dictBytes;
  let contentSize: number | null = null;
  if (fcsBytes === 1) contentSize = frame[at]!;
  else if (fcsBytes === 2) contentSize = view.getUint16(at, true) + 256;
  else if (fcsBytes === 4) contentSize = view.getUint32(at, true);
  else if (fcsBytes === 8) contentSize = Number(view.getBigUint64(at, true)); // beyond 2^53 only if absurd; compared exactly below anyway
  return { contentSize, headerSize, hasChecksum: (descriptor & 0x04) !== 0, dictionaryId };
}

/**
 * Length in bytes of the zstd frame at the start of `bytes`, found by walking its block
 * headers (RFC 8878 §3.1.1.2) without decoding anything.
 */
export function frameLength(bytes: Uint8Array): number {
  const header = parseFrameHeader(bytes);
  let at = header.headerSize;
  for (;;) {
    if (at + 3 > bytes.length) throw new FormatError("zstd.frame", `zstd frame is truncated: a block header at byte ${at} is past its ${bytes.length} bytes`);
    const blockHeader = bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16);
    const type = (blockHeader >> 1) & 3;
    if (type === 3) throw new FormatError("zstd.frame", `zstd frame has a block of the reserved type at byte ${at}`);
    at += 3 + (type === 1 ? 1 : blockHeader >>> 3);
    if ((blockHeader & 1) !== 0) break;
  }
  if (header.hasChecksum) at += 4;
  if (at > bytes.length) throw new FormatError("zstd.frame", `zstd frame is truncated: it needs ${at} bytes, has ${bytes.length}`);
  return at;
}

/**
 * Decompresses one frame that must hold exactly `expectedSize` bytes. Never allocates more
 * than expectedSize + 1 bytes of output; IntegrityError when the size differs (declared or
 * actual), FormatError when the frame is not valid zstd.
 */
export function decompressChunk(frame: Uint8Array, expectedSize: number): Uint8Array {
  if (!Number.isSafeInteger(expectedSize) || expectedSize < 0) throw new RangeError(`decompressChunk: expected size ${expectedSize} is not a byte count`);
  const header = parseFrameHeader(frame);
  if (header.dictionaryId !== 0) throw new FormatError("zstd.dictionary", `zstd frame needs dictionary ${header.dictionaryId}; blocks are compressed without one`);
  if (header.contentSize !== null && header.contentSize !== expectedSize) {
    throw new IntegrityError("zstd.size", `zstd frame declares ${header.contentSize} bytes of content, expected ${expectedSize}`);
  }
  // Exactly one frame: node:zlib would decode the first frame of several and drop the rest
  // without a word (nodejs/node#64741), so trailing bytes are refused here.
  const length = frameLength(frame);
  if (length !== frame.length) {
    throw new FormatError("zstd.trailing", `${frame.length - length} bytes follow the zstd frame (${length} bytes); a block is exactly one frame`);
  }
  // zlib stops as soon as the output passes the limit; node:zlib refuses a limit beyond the largest Buffer.
  const limit = Math.min(expectedSize + 1, MAX_LENGTH);
  let out: Buffer;
  try {
    // A chunk's frame decodes into one output buffer of the limit's size. The buffer is capped:
    // the expected size is only a claim (a hostile header or manifest may say 8 GiB for a frame
    // of 5 bytes), and a buffer of the claimed size would be allocated up front; past the cap
    // zlib adds buffers as the frame really produces output.
    out = zlib.zstdDecompressSync(frame, { maxOutputLength: limit, chunkSize: Math.min(Math.max(limit, 64), DECODE_BUFFER_MAX) });
  } catch (err) {
    if ((err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
      throw new IntegrityError("zstd.size", `zstd frame decompresses to more than the expected ${expectedSize} bytes`, { cause: err });
    }
    throw new FormatError("zstd.corrupt", `zstd frame does not decompress: ${(err as Error).message}`, { cause: err });
  }
  if (out.length !== expectedSize) {
    throw new IntegrityError("zstd.size", `zstd frame decompresses to ${out.length} bytes, expected ${expectedSize}`);
  }
  return out;
}

/** A stored frame and the size it must decompress to. */
export interface SizedFrame {
  frame: Uint8Array;
  size: number;
}

/**
 * Decompresses consecutive frames (a `.nar` from stored chunk frames), each bounded and
 * checked by its own size, yielding one array per frame. (A node:zlib streaming decompressor
 * also decodes concatenated frames, but only when every write ends on a frame boundary: it
 * drops what follows the end of a frame within one write, nodejs/node#64741.)
 */
export async function* decompressFrames(frames: AsyncIterable<SizedFrame> | Iterable<SizedFrame>): AsyncGenerator<Uint8Array> {
  for await (const { frame, size } of frames) yield decompressChunk(frame, size);
}
