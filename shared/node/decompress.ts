// Decoders for the NAR `Compression:` values a client can upload (docs/nix-protocol.md §6), as
// streams: the chunker reads staged NARs of any size through here, so nothing is buffered
// beyond the decoder's own window.
//
// zstd goes through shared/zstd-stream.ts (node:zlib one frame at a time: node:zlib alone stops
// after the first frame of a multi-frame stream, which Nix's parallel-compression writes).
// gzip and br use node:zlib. xz, bzip2, lzma, lzip and lz4 have no decoder in Node:
// they are piped through the system tool (`xz -dc`, …), which is what Nix's own libarchive
// would run the same formats through; a tool that is not installed makes its compression
// unsupported (the error lists what is). The subprocess is killed when the consumer stops early.
//
// Everything here treats the input as hostile:
//   - the output is counted and cut at `maxOutputBytes` (a decompression bomb is a FormatError,
//     not an exhausted disk or heap);
//   - the first bytes are sniffed: data labelled `none` must start like a NAR, data labelled
//     with a format that has a magic number must start with it (a client that compressed with
//     one tool and labelled with another gets told so instead of "corrupt data");
//   - a decoder failure becomes a FormatError carrying the decoder's message; a failure of the
//     *source* (a network read) is passed through unchanged, so callers can retry it.
//
// Error codes: decompress.unsupported, decompress.mismatch, decompress.not-nar,
// decompress.corrupt, decompress.too-large.
import { spawn } from "node:child_process";
import { Readable, Writable, pipeline } from "node:stream";
import * as zlib from "node:zlib";
import { FormatError, NixcasError } from "../errors.ts";
import { findTool } from "./system-tools.ts";
import { decompressZstdStream } from "../zstd-stream.ts";

export interface DecompressLimits {
  /** Largest decompressed output accepted; one byte more is a FormatError (decompress.too-large). */
  maxOutputBytes: number;
}

type Decoder =
  | { kind: "identity" }
  | { kind: "zlib"; create: () => zlib.Gunzip | zlib.BrotliDecompress }
  | { kind: "stream"; decode: (source: AsyncIterable<Uint8Array>, maxOutputBytes: number) => AsyncIterable<Uint8Array> }
  | { kind: "tool"; command: string; args: string[] };

/** How each format's data starts; formats without a reliable magic number are not sniffed. */
const MAGIC: ReadonlyArray<{ name: string; test: (head: Uint8Array) => boolean; length: number }> = [
  // A NAR starts with str("nix-archive-1"): u64le(13), the 13 bytes, 3 zero bytes of padding.
  { name: "none", length: 24, test: (h) => startsWith(h, NAR_START) },
  // zstd frame, or a skippable frame (0x184D2A50..5F little-endian), which may precede one.
  { name: "zstd", length: 4, test: (h) => startsWith(h, [0x28, 0xb5, 0x2f, 0xfd]) || (h.length >= 4 && (h[0]! & 0xf0) === 0x50 && h[1] === 0x2a && h[2] === 0x4d && h[3] === 0x18) },
  { name: "gzip", length: 2, test: (h) => startsWith(h, [0x1f, 0x8b]) },
  { name: "xz", length: 6, test: (h) => startsWith(h, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]) },
  { name: "bzip2", length: 3, test: (h) => startsWith(h, [0x42, 0x5a, 0x68]) },
  { name: "lzip", length: 4, test: (h) => startsWith(h, [0x4c, 0x5a, 0x49, 0x50]) },
  // lz4 frame format, and the legacy format `lz4 -l` writes.
  { name: "lz4", length: 4, test: (h) => startsWith(h, [0x04, 0x22, 0x4d, 0x18]) || startsWith(h, [0x02, 0x21, 0x4c, 0x18]) },
];

const NAR_START = [13, 0, 0, 0, 0, 0, 0, 0, ...new TextEncoder().encode("nix-archive-1"), 0, 0, 0];
const SNIFF_BYTES = 24;

function toolDecoder(tool: string, args: string[]): Decoder | null {
  const command = findTool(tool);
  return command ? { kind: "tool", command, args } : null;
}

// Looked up once: which tools exist does not change while a process runs, and the list of
// supported names goes into error messages.
const DECODERS: ReadonlyMap<string, Decoder> = (() => {
  const table: Array<[string, Decoder | null]> = [
    ["none", { kind: "identity" }],
    ["zstd", { kind: "stream", decode: (source, maxOutputBytes) => decompressZstdStream(source, { maxOutputBytes }) }],
    ["gzip", { kind: "zlib", create: () => zlib.createGunzip() }],
    ["br", { kind: "zlib", create: () => zlib.createBrotliDecompress() }],
    ["xz", toolDecoder("xz", ["-dc", "--format=xz"])],
    ["bzip2", toolDecoder("bzip2", ["-dc"])],
    ["lzma", toolDecoder("xz", ["-dc", "--format=lzma"])],
    ["lzip", toolDecoder("lzip", ["-dc"])],
    ["lz4", toolDecoder("lz4", ["-dc"])],
  ];
  return new Map(table.filter((e): e is [string, Decoder] => e[1] !== null));
})();

/** The `Compression:` values this process can decode (depends on the installed tools). */
export const SUPPORTED_COMPRESSIONS: readonly string[] = [...DECODERS.keys()];

/** Throws decompress.unsupported unless `compression` can be decoded here. */
export function checkCompression(compression: string): void {
  if (!DECODERS.has(compression)) {
    throw new FormatError(
      "decompress.unsupported",
      `compression ${JSON.stringify(compression)} is not supported (supported: ${SUPPORTED_COMPRESSIONS.join(", ")})`,
    );
  }
}

/**
 * Decodes `source` (the bytes as uploaded) into the NAR. Throws decompress.unsupported at once
 * for an unknown compression; every other problem surfaces while iterating.
 */
export function decompressStream(
  source: AsyncIterable<Uint8Array>,
  compression: string,
  limits: DecompressLimits,
): AsyncIterable<Uint8Array> {
  checkCompression(compression);
  if (!Number.isSafeInteger(limits.maxOutputBytes) || limits.maxOutputBytes < 0) {
    throw new RangeError(`maxOutputBytes must be a non-negative integer, got ${limits.maxOutputBytes}`);
  }
  return decode(source, compression, DECODERS.get(compression)!, limits.maxOutputBytes);
}

async function* decode(source: AsyncIterable<Uint8Array>, compression: string, decoder: Decoder, max: number): AsyncGenerator<Uint8Array> {
  const tracked = new TrackedSource(source);
  try {
    yield* decodeTracked(tracked, compression, decoder, max);
  } finally {
    // However decoding ended (sniff refused, decoder failed, consumer left): release the source.
    await tracked.close();
  }
}

async function* decodeTracked(tracked: TrackedSource, compression: string, decoder: Decoder, max: number): AsyncGenerator<Uint8Array> {
  const head = await tracked.peek(SNIFF_BYTES);
  sniff(head, compression);
  const limit = (total: number) => {
    if (total > max) {
      throw new FormatError("decompress.too-large", `${compression} data decompresses to more than ${max} bytes (the limit for this upload)`);
    }
  };
  switch (decoder.kind) {
    case "identity": {
      let total = 0;
      for await (const chunk of tracked) {
        total += chunk.length;
        limit(total);
        yield chunk;
      }
      return;
    }
    case "stream": {
      // The decoder enforces the limit itself; counted here too so every kind ends the same way.
      let total = 0;
      try {
        for await (const chunk of decoder.decode(tracked, max)) {
          total += chunk.length;
          limit(total);
          yield chunk;
        }
      } catch (err) {
        throw tracked.error ?? decoderError(err, compression, compression);
      }
      return;
    }
    case "zlib":
      yield* decodeZlib(tracked, compression, decoder.create(), limit);
      return;
    case "tool":
      yield* decodeTool(tracked, compression, decoder.command, decoder.args, limit);
      return;
  }
}

async function* decodeZlib(
  tracked: TrackedSource,
  compression: string,
  transform: zlib.Gunzip | zlib.BrotliDecompress,
  limit: (total: number) => void,
): AsyncGenerator<Uint8Array> {
  const input = Readable.from(tracked);
  // pipeline destroys the transform with the input's error, so iterating it throws either one.
  pipeline(input, transform, () => {});
  let total = 0;
  try {
    for await (const chunk of transform as AsyncIterable<Buffer>) {
      total += chunk.length;
      limit(total);
      yield chunk;
    }
  } catch (err) {
    throw tracked.error ?? decoderError(err, compression, compression);
  } finally {
    transform.destroy();
    input.destroy();
  }
}

async function* decodeTool(
  tracked: TrackedSource,
  compression: string,
  command: string,
  args: string[],
  limit: (total: number) => void,
): AsyncGenerator<Uint8Array> {
  const child = spawn(command, args, { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (text: string) => {
    stderr = (stderr + text).slice(-4000);
  });
  let spawnError: Error | undefined;
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on("error", (err) => {
      spawnError = err;
      resolve({ code: null, signal: null });
    });
    child.on("close", (code, signal) => resolve({ code, signal }));
  });
  // The tool may exit before reading everything (corrupt data): EPIPE on its stdin is then
  // expected, and its exit status says what happened.
  const input = Readable.from(tracked);
  const fed = new Promise<void>((resolve) => pipeline(input, child.stdin as Writable, () => resolve()));
  let total = 0;
  let finished = false;
  try {
    try {
      for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
        total += chunk.length;
        limit(total);
        yield chunk;
      }
    } catch (err) {
      if (err instanceof NixcasError) throw err;
      throw tracked.error ?? decoderError(err, compression, command);
    }
    const { code, signal } = await closed;
    await fed;
    finished = true;
    if (tracked.error) throw tracked.error;
    if (spawnError) throw new NixcasError("decompress.tool", `cannot run ${command} to decode ${compression}: ${spawnError.message}`);
    if (code !== 0) {
      const why = stderr.trim().split("\n").slice(-3).join("; ") || (signal ? `killed by ${signal}` : `exit status ${code}`);
      throw new FormatError("decompress.corrupt", `${compression} data is corrupt: ${why}`);
    }
  } finally {
    if (!finished && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    input.destroy();
    child.stdout.destroy();
  }
}

function decoderError(err: unknown, compression: string, decoder: string): Error {
  if (err instanceof NixcasError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new FormatError("decompress.corrupt", `${compression} data is corrupt: ${decoder}: ${message}`, { cause: err });
}

/**
 * Checks that data starts the way its label says (see the header); `head` = at least the first
 * 24 bytes, or all of them when shorter. Exported for callers that hold the bytes already.
 */
export function checkMagic(head: Uint8Array, compression: string): void {
  sniff(head, compression);
}

function sniff(head: Uint8Array, compression: string): void {
  const looksLike = MAGIC.find((m) => m.test(head))?.name;
  const expected = MAGIC.find((m) => m.name === compression);
  if (compression === "none") {
    if (looksLike === "none") return;
    const what = looksLike ? `it starts like ${looksLike}-compressed data` : head.length < SNIFF_BYTES ? `it is only ${head.length} bytes long` : `it starts with ${hex(head.subarray(0, 16))}`;
    throw new FormatError("decompress.not-nar", `data labelled 'none' is not a NAR (${what}; a NAR starts with the string 'nix-archive-1')`);
  }
  if (head.length === 0) throw new FormatError("decompress.corrupt", `${compression} data is empty`);
  if (!expected) return; // br, lzma: no reliable magic number; the decoder decides
  if (expected.test(head)) return;
  const what = looksLike === "none" ? "it is an uncompressed NAR" : looksLike ? `it starts like ${looksLike} data` : `it starts with ${hex(head.subarray(0, 8))}`;
  throw new FormatError("decompress.mismatch", `data labelled '${compression}' is not ${compression} (${what})`);
}

function startsWith(bytes: Uint8Array, prefix: readonly number[]): boolean {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

function hex(bytes: Uint8Array): string {
  return `0x${Buffer.from(bytes).toString("hex")}`;
}

/**
 * Wraps the caller's source: lets the first bytes be peeked at without losing them, and
 * remembers an error thrown by the source itself so that it is not mistaken for corrupt data.
 */
class TrackedSource implements AsyncIterable<Uint8Array> {
  error: unknown;
  #iterator: AsyncIterator<Uint8Array>;
  #pending: Uint8Array[] = [];
  #finished = false;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.#iterator = source[Symbol.asyncIterator]();
  }

  async #next(): Promise<IteratorResult<Uint8Array>> {
    try {
      const r = await this.#iterator.next();
      if (r.done) this.#finished = true;
      return r;
    } catch (err) {
      this.error = err;
      this.#finished = true;
      throw err;
    }
  }

  /** At least `n` bytes from the start (fewer only if the source is shorter). */
  async peek(n: number): Promise<Uint8Array> {
    let have = 0;
    while (have < n) {
      const r = await this.#next();
      if (r.done) break;
      if (r.value.length === 0) continue;
      this.#pending.push(r.value);
      have += r.value.length;
    }
    return concatPrefix(this.#pending, n);
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    while (this.#pending.length > 0) yield this.#pending.shift()!;
    for (;;) {
      const r = await this.#next();
      if (r.done) break;
      if (r.value.length > 0) yield r.value;
    }
  }

  /** Ends the source if it has not ended (or failed) by itself, so it releases what it holds. */
  async close(): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    await Promise.resolve(this.#iterator.return?.()).catch(() => {});
  }
}

function concatPrefix(pieces: readonly Uint8Array[], n: number): Uint8Array {
  const total = Math.min(n, pieces.reduce((s, p) => s + p.length, 0));
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of pieces) {
    if (at >= total) break;
    const take = Math.min(p.length, total - at);
    out.set(p.subarray(0, take), at);
    at += take;
  }
  return out;
}
