// Decoding a zstd *stream*: any number of frames (RFC 8878 §3.1), with skippable frames
// (§3.1.2) anywhere between them. node:zlib's zstd decoder (Node 24, sync and streaming)
// decodes the first frame of a concatenation and silently drops the rest (nodejs/node#64741),
// yet multi-frame streams are normal: Nix with `parallel-compression`, `zstd --adapt`, pzstd,
// and our own `.nar.zst` (stored chunk frames concatenated).
//
// So a small state machine (`ZstdFrameScanner`) walks the frame format as the bytes pass
// through (magic, frame header, 3-byte block headers, optional checksum) without decoding
// anything, and cuts the input into per-frame segments. Each zstd frame goes into a fresh
// zlib.createZstdDecompress(), ended at the frame's end; skippable frames are dropped. Nothing
// holds a whole frame (one can be many GiB): memory is zlib's window plus a few header bytes
// and the source's own pieces. The exception is small: a frame that declares at most 1 MiB of
// content is gathered (≤ 2 MiB of its bytes) and decoded in one synchronous call (our own
// 64 KiB chunk frames: a zlib stream per frame costs several times the decoding).
//
// The input is hostile: the output is counted and cut at `maxOutputBytes` (a frame's declared
// size is checked before decoding it), structure errors name the byte offset, a stream that
// ends inside a frame is refused, dictionary frames and windows beyond zlib's limit are refused
// up front. A failure of the *source* itself is passed through unchanged (callers may retry).
//
// Error codes: decompress.corrupt, decompress.too-large, decompress.unsupported.
import { Readable, pipeline } from "node:stream";
import zlib from "node:zlib";
import { FormatError, NixcasError } from "./errors.ts";
import { parseFrameHeader, type ZstdFrameHeader } from "./zstd.ts";

export interface ZstdStreamOptions {
  /** Largest decompressed output accepted; one byte more is a FormatError (decompress.too-large). */
  maxOutputBytes: number;
}

/** A piece of one zstd frame's bytes, in order; a frame's pieces run from `first` to `last`. */
export interface FrameSegment {
  bytes: Uint8Array;
  /** These bytes start the frame (with its magic number). */
  first: boolean;
  /** These bytes end the frame (the last block, or the checksum). */
  last: boolean;
  /** Index of the frame among the stream's zstd frames (skippable frames not counted). */
  frame: number;
  /** Stream offset of the frame's first byte. */
  frameOffset: number;
  /** The frame's header once it has been read (always set on the `last` segment). */
  header: ZstdFrameHeader | null;
}

const ZSTD_MAGIC = 0xfd2fb528;
const MAGIC_BYTES: Uint8Array = Uint8Array.of(0x28, 0xb5, 0x2f, 0xfd);
/** RFC 8878 §3.1.1.2.3: no block holds (or regenerates) more than 128 KiB. */
const BLOCK_MAX = 128 * 1024;
/** zlib's decoder refuses windows beyond 2^27 (ZSTD_WINDOWLOG_LIMIT_DEFAULT): say so up front. */
const WINDOW_LOG_MAX = 27;
/** Frames declaring at most this much content are gathered and decoded in one synchronous call. */
const WHOLE_FRAME_MAX = 1 << 20;
/** Output piece size of the streaming decoder (zlib's default, 16 KiB, costs throughput). */
const OUTPUT_CHUNK = 128 * 1024;

type State = "magic" | "header" | "block-header" | "block-body" | "checksum" | "skip-size" | "skip-body";

/**
 * The frame walker: fed the stream piece by piece, returns the segments of zstd frames in it
 * (subarrays of the pieces, not copies) and drops skippable frames. Throws FormatError with
 * the offset on anything that is not a well-formed frame sequence. Pure: no decoding, no I/O.
 */
export class ZstdFrameScanner {
  /** Bytes consumed so far (the stream offset of the next byte). */
  offset = 0;
  /** zstd frames completed so far. */
  frames = 0;
  #state: State = "magic";
  /** Header fields being gathered (magic, frame header ≤ 18 bytes, block header, skip size). */
  #acc = new Uint8Array(18);
  #accLength = 0;
  #headerLength = 5;
  #header: ZstdFrameHeader | null = null;
  #remaining = 0;
  #lastBlock = false;
  #frameOffset = 0;
  #firstSent = false;

  /** Segments of zstd frames in `chunk`, in order. */
  feed(chunk: Uint8Array): FrameSegment[] {
    const out: FrameSegment[] = [];
    const n = chunk.length;
    let pos = 0;
    // Where the unsent bytes of the current frame start in this chunk; -1 outside a frame.
    let rangeStart = this.#inFrame() ? 0 : -1;
    let magicStart = -1;
    while (pos < n) {
      switch (this.#state) {
        case "magic": {
          if (this.#accLength === 0) magicStart = pos;
          pos = this.#gather(chunk, pos, 4);
          if (this.#accLength < 4) break;
          const magic = u32le(this.#acc, 0);
          const start = this.offset + pos - 4;
          if (magic === ZSTD_MAGIC) {
            this.#frameOffset = start;
            this.#firstSent = false;
            this.#header = null;
            this.#headerLength = 5;
            this.#state = "header";
            if (magicStart >= 0) {
              rangeStart = magicStart;
            } else {
              // The magic number was split across pieces: send it on its own.
              out.push(this.#segment(MAGIC_BYTES, false));
              rangeStart = pos;
            }
          } else if ((magic & 0xfffffff0) === 0x184d2a50) {
            this.#accLength = 0;
            this.#state = "skip-size";
          } else {
            throw corrupt(`no zstd frame at byte ${start}: magic number 0x${hex32(magic)}${this.frames > 0 ? ` after ${this.frames} frame(s)` : ""}`);
          }
          magicStart = -1;
          break;
        }
        case "header": {
          pos = this.#gather(chunk, pos, this.#headerLength);
          if (this.#accLength < this.#headerLength) break;
          if (this.#headerLength === 5) {
            // Descriptor known: the header's full length follows from its flags (RFC 8878 §3.1.1.1.1).
            const d = this.#acc[4]!;
            const singleSegment = (d & 0x20) !== 0;
            this.#headerLength = 5 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][d & 3]! + [singleSegment ? 1 : 0, 2, 4, 8][d >> 6]!;
            if (this.#accLength < this.#headerLength) break;
          }
          this.#header = this.#readHeader();
          this.#accLength = 0;
          this.#state = "block-header";
          break;
        }
        case "block-header": {
          pos = this.#gather(chunk, pos, 3);
          if (this.#accLength < 3) break;
          const bits = this.#acc[0]! | (this.#acc[1]! << 8) | (this.#acc[2]! << 16);
          const type = (bits >> 1) & 3;
          const size = bits >>> 3;
          const at = this.offset + pos - 3;
          if (type === 3) throw corrupt(`zstd frame ${this.frames} (at byte ${this.#frameOffset}) has a block of the reserved type at byte ${at}`);
          if (size > BLOCK_MAX) throw corrupt(`zstd frame ${this.frames} (at byte ${this.#frameOffset}) has a block of ${size} bytes at byte ${at}; blocks are at most ${BLOCK_MAX}`);
          this.#accLength = 0;
          this.#lastBlock = (bits & 1) !== 0;
          this.#remaining = type === 1 ? 1 : size; // an RLE block carries its one byte
          this.#state = "block-body";
          if (this.#remaining === 0 && this.#afterBlock()) {
            out.push(this.#segment(chunk.subarray(rangeStart, pos), true));
            rangeStart = -1;
          }
          break;
        }
        case "block-body":
        case "checksum": {
          const take = Math.min(this.#remaining, n - pos);
          pos += take;
          this.#remaining -= take;
          if (this.#remaining > 0) break;
          if (this.#state === "checksum" ? this.#endFrame() : this.#afterBlock()) {
            out.push(this.#segment(chunk.subarray(rangeStart, pos), true));
            rangeStart = -1;
          }
          break;
        }
        case "skip-size": {
          pos = this.#gather(chunk, pos, 4);
          if (this.#accLength < 4) break;
          this.#accLength = 0;
          this.#remaining = u32le(this.#acc, 0);
          this.#state = this.#remaining === 0 ? "magic" : "skip-body";
          break;
        }
        case "skip-body": {
          const take = Math.min(this.#remaining, n - pos);
          pos += take;
          this.#remaining -= take;
          if (this.#remaining === 0) this.#state = "magic";
          break;
        }
      }
    }
    if (rangeStart >= 0 && pos > rangeStart) out.push(this.#segment(chunk.subarray(rangeStart, pos), false));
    this.offset += n;
    return out;
  }

  /** Call at the end of the stream: throws unless it ended between frames. */
  finish(): void {
    if (this.#state === "magic" && this.#accLength === 0) {
      if (this.offset === 0) throw corrupt("zstd data is empty");
      return;
    }
    const where =
      this.#state === "magic"
        ? `${this.#accLength} byte(s) after the last frame, too few for a magic number`
        : this.#state.startsWith("skip")
          ? "inside a skippable frame"
          : `inside zstd frame ${this.frames} (which starts at byte ${this.#frameOffset})`;
    throw corrupt(`zstd data is truncated: it ends at byte ${this.offset}, ${where}`);
  }

  #inFrame(): boolean {
    return this.#state === "header" || this.#state === "block-header" || this.#state === "block-body" || this.#state === "checksum";
  }

  /** Copies bytes into the header accumulator until it holds `want`; returns the new position. */
  #gather(chunk: Uint8Array, pos: number, want: number): number {
    const take = Math.min(want - this.#accLength, chunk.length - pos);
    this.#acc.set(chunk.subarray(pos, pos + take), this.#accLength);
    this.#accLength += take;
    return pos + take;
  }

  #readHeader(): ZstdFrameHeader {
    const where = `zstd frame ${this.frames} (at byte ${this.#frameOffset})`;
    let header: ZstdFrameHeader;
    try {
      header = parseFrameHeader(this.#acc.subarray(0, this.#headerLength));
    } catch (err) {
      throw corrupt(`${where}: ${(err as Error).message}`, err);
    }
    if (header.dictionaryId !== 0) {
      throw new FormatError("decompress.unsupported", `${where} needs zstd dictionary ${header.dictionaryId}; dictionaries are not supported`);
    }
    // The window (RFC 8878 §3.1.1.1.2): from the window descriptor's exponent, or, in a single-segment
    // frame, the content size. zlib would refuse a larger one mid-stream with a vaguer message.
    const d = this.#acc[4]!;
    const windowSize = (d & 0x20) === 0 ? windowSizeOf(this.#acc[5]!) : header.contentSize!;
    const tooBig = windowSize > 2 ** WINDOW_LOG_MAX;
    if (tooBig) {
      throw new FormatError("decompress.unsupported", `${where} needs a window larger than 2^${WINDOW_LOG_MAX} bytes (128 MiB), the most supported (was it compressed with zstd --long?)`);
    }
    return header;
  }

  /** After a block's bytes: true when that ended the frame. */
  #afterBlock(): boolean {
    if (!this.#lastBlock) {
      this.#state = "block-header";
      return false;
    }
    if (this.#header!.hasChecksum) {
      this.#state = "checksum";
      this.#remaining = 4;
      return false;
    }
    return this.#endFrame();
  }

  #endFrame(): true {
    this.#state = "magic";
    this.#accLength = 0;
    return true;
  }

  #segment(bytes: Uint8Array, last: boolean): FrameSegment {
    const segment: FrameSegment = { bytes, first: !this.#firstSent, last, frame: this.frames, frameOffset: this.#frameOffset, header: this.#header };
    this.#firstSent = true;
    if (last) this.frames++;
    return segment;
  }
}

/**
 * Decodes a zstd stream of any number of frames into its content, piece by piece. Throws
 * FormatError (decompress.corrupt with the offset, decompress.too-large past
 * `maxOutputBytes`, decompress.unsupported for dictionaries / huge windows); an error thrown by
 * `source` passes through unchanged. Stopping the iteration early releases the source.
 */
export async function* decompressZstdStream(source: AsyncIterable<Uint8Array>, options: ZstdStreamOptions): AsyncGenerator<Uint8Array> {
  const max = options.maxOutputBytes;
  if (!Number.isSafeInteger(max) || max < 0) throw new RangeError(`maxOutputBytes must be a non-negative integer, got ${max}`);
  const segments = new SegmentSource(source);
  let total = 0;
  const tooLarge = () => new FormatError("decompress.too-large", `zstd data decompresses to more than ${max} bytes (the limit)`);
  try {
    for (;;) {
      const first = await segments.next();
      if (first === null) return;
      const header = first.header;
      if (header?.contentSize != null && total + header.contentSize > max) throw tooLarge();
      let produced = 0;
      const prefix = await gatherSmallFrame(first, segments);
      const last = prefix[prefix.length - 1]!;
      if (last.last && header !== null && header.contentSize !== null && header.contentSize <= WHOLE_FRAME_MAX) {
        const out = decodeWholeFrame(prefix);
        produced = out.length;
        total += produced;
        if (out.length > 0) yield out;
      } else {
        for await (const out of decodeFrame(prefix, segments)) {
          produced += out.length;
          total += out.length;
          if (total > max) throw tooLarge();
          yield out;
        }
        const declared = segments.lastHeader?.contentSize;
        if (declared != null && produced !== declared) {
          throw corrupt(`zstd frame ${first.frame} (at byte ${first.frameOffset}) declares ${declared} bytes of content but decodes to ${produced}`);
        }
      }
    }
  } finally {
    await segments.close();
  }
}

/**
 * The first segments of a frame: all of them when the frame declares at most WHOLE_FRAME_MAX
 * bytes of content (its compressed bytes are then about as small; a frame that is not is
 * streamed from what was gathered), else just `first`.
 */
async function gatherSmallFrame(first: FrameSegment, segments: SegmentSource): Promise<FrameSegment[]> {
  const parts = [first];
  const declared = first.header?.contentSize ?? null;
  if (declared === null || declared > WHOLE_FRAME_MAX) return parts;
  let bytes = first.bytes.length;
  let segment = first;
  while (!segment.last && bytes <= 2 * WHOLE_FRAME_MAX) {
    segment = (await segments.next())!; // the scanner throws on a stream that ends mid-frame
    parts.push(segment);
    bytes += segment.bytes.length;
  }
  return parts;
}

/** A whole frame with a small declared size, in one synchronous call. */
function decodeWholeFrame(parts: readonly FrameSegment[]): Uint8Array {
  const first = parts[0]!;
  const declared = parts[parts.length - 1]!.header!.contentSize!;
  const frame = parts.length === 1 ? first.bytes : Buffer.concat(parts.map((p) => p.bytes));
  let out: Buffer;
  try {
    out = zlib.zstdDecompressSync(frame, { maxOutputLength: declared + 1, chunkSize: Math.max(64, Math.min(declared + 1, OUTPUT_CHUNK)) });
  } catch (err) {
    throw frameCorrupt(first, err);
  }
  if (out.length !== declared) {
    throw corrupt(`zstd frame ${first.frame} (at byte ${first.frameOffset}) declares ${declared} bytes of content but decodes to ${out.length}`);
  }
  return out;
}

/** One frame through a fresh streaming decoder: its segments in (`prefix` first), its content out. */
async function* decodeFrame(prefix: readonly FrameSegment[], segments: SegmentSource): AsyncGenerator<Uint8Array> {
  const first = prefix[0]!;
  async function* input(): AsyncGenerator<Uint8Array> {
    for (const segment of prefix) yield segment.bytes;
    let segment = prefix[prefix.length - 1]!;
    while (!segment.last) {
      const next = await segments.next();
      // The scanner throws on a stream that ends inside a frame, so null cannot come here.
      if (next === null || next.first) throw new Error("zstd-stream: frame segments out of order");
      segment = next;
      yield segment.bytes;
    }
  }
  const decoder = zlib.createZstdDecompress({ chunkSize: OUTPUT_CHUNK });
  // One segment at a time: the decoder's own buffering is the only read-ahead.
  const feed = Readable.from(input(), { highWaterMark: 1 });
  // pipeline destroys the decoder with the feed's error (truncation, source failure), so
  // iterating the decoder throws whichever happened first.
  pipeline(feed, decoder, () => {});
  try {
    for await (const out of decoder as AsyncIterable<Buffer>) yield out;
  } catch (err) {
    if (segments.sourceError !== undefined) throw segments.sourceError;
    if (err instanceof NixcasError) throw err;
    throw frameCorrupt(first, err);
  } finally {
    feed.destroy();
    decoder.destroy();
  }
}

/**
 * The source as a sequence of frame segments: reads a piece when the segments of the last one
 * are used up, and remembers an error of the source so that it is not taken for corrupt data.
 */
class SegmentSource {
  sourceError: unknown;
  /** Header of the frame of the segment returned last. */
  lastHeader: ZstdFrameHeader | null = null;
  #iterator: AsyncIterator<Uint8Array>;
  #scanner = new ZstdFrameScanner();
  #queue: FrameSegment[] = [];
  #next = 0;
  #done = false;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.#iterator = source[Symbol.asyncIterator]();
  }

  /** The next segment; null at the end of a well-formed stream. */
  async next(): Promise<FrameSegment | null> {
    while (this.#next >= this.#queue.length) {
      if (this.#done) return null;
      let r: IteratorResult<Uint8Array>;
      try {
        r = await this.#iterator.next();
      } catch (err) {
        this.sourceError = err;
        this.#done = true;
        throw err;
      }
      if (r.done) {
        this.#done = true;
        this.#scanner.finish();
        return null;
      }
      this.#queue = this.#scanner.feed(r.value);
      this.#next = 0;
    }
    const segment = this.#queue[this.#next++]!;
    this.lastHeader = segment.header;
    return segment;
  }

  /** Ends the source if it has not ended (or failed) by itself, so it releases what it holds. */
  async close(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await Promise.resolve(this.#iterator.return?.()).catch(() => {});
  }
}

function corrupt(message: string, cause?: unknown): FormatError {
  return new FormatError("decompress.corrupt", message, cause === undefined ? undefined : { cause });
}

function frameCorrupt(segment: FrameSegment, err: unknown): FormatError {
  const message = err instanceof Error ? err.message : String(err);
  return corrupt(`zstd frame ${segment.frame} (at byte ${segment.frameOffset}) is corrupt: ${message}`, err);
}

/** Window_Descriptor → Window_Size (RFC 8878 §3.1.1.1.2). */
function windowSizeOf(descriptor: number): number {
  const base = 2 ** (10 + (descriptor >> 3));
  return base + (base / 8) * (descriptor & 7);
}

function u32le(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, "0");
}
