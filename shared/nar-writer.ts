// Writing NARs: `NarEventWriter` turns parser events back into NAR bytes (for re-serialising,
// filtering, tests); `dumpPath` (shared/node/nar-dump.ts) streams the NAR of a file-system object.
// Both write through `NarOutput`, which coalesces the many small tokens into pieces of about
// 64 KiB, because a consumer (hash, socket, chunker) pays per piece, not per byte.
import { NixcasError } from "./errors.ts";
import {
  NAR_DEFAULT_LIMITS,
  bytesToByteString,
  byteStringToBytes,
  narPadding,
  showByteString,
  type NarDirectory,
  type NarFile,
  type NarSymlink,
  type NarVisitor,
  T_CLOSE,
  T_CONTENTS,
  T_DIRECTORY,
  T_ENTRY,
  T_EXECUTABLE,
  T_MAGIC,
  T_NAME,
  T_NODE,
  T_OPEN,
  T_REGULAR,
  T_SYMLINK,
  T_TARGET,
  T_TYPE,
  EMPTY,
} from "./nar.ts";

const ZEROS = new Uint8Array(8);

export const NAR_OUTPUT_CHUNK = 64 * 1024;

/**
 * An append-only NAR byte sink that hands out pieces of about `chunkSize` bytes. A piece, once
 * taken, is never written again (consumers may keep it). Large content passed to `bytes()` is
 * passed through without a copy.
 */
export class NarOutput {
  private readonly chunkSize: number;
  private buf: Uint8Array;
  private pos = 0;
  private ready: Uint8Array[] = [];
  /** Total bytes written. */
  size = 0;

  constructor(chunkSize = NAR_OUTPUT_CHUNK) {
    this.chunkSize = chunkSize;
    this.buf = new Uint8Array(chunkSize);
  }

  /** str(s): u64 length, bytes, zero padding. */
  str(s: Uint8Array): void {
    this.u64(s.length);
    this.bytes(s);
    this.padding(s.length);
  }

  u64(n: number): void {
    const b = this.space(8);
    const lo = n >>> 0;
    const hi = Math.floor(n / 0x100000000);
    b[this.pos] = lo;
    b[this.pos + 1] = lo >>> 8;
    b[this.pos + 2] = lo >>> 16;
    b[this.pos + 3] = lo >>> 24;
    b[this.pos + 4] = hi;
    b[this.pos + 5] = hi >>> 8;
    b[this.pos + 6] = hi >>> 16;
    b[this.pos + 7] = hi >>> 24;
    this.pos += 8;
    this.size += 8;
  }

  /**
   * Raw bytes: copied into the current piece when they fit (or are small), else passed on as a
   * piece of their own — as they are when `owned` (the caller gives them up), else as a copy.
   */
  bytes(s: Uint8Array, owned = true): void {
    if (s.length === 0) return;
    if (s.length <= this.chunkSize - this.pos || s.length < 4096) {
      this.space(s.length).set(s, this.pos);
      this.pos += s.length;
    } else {
      this.flush();
      this.ready.push(owned ? s : s.slice());
    }
    this.size += s.length;
  }

  /** The zero padding after `length` bytes of a string. */
  padding(length: number): void {
    this.bytes(ZEROS.subarray(0, narPadding(length)));
  }

  /**
   * Room for `n` bytes written in place (e.g. a file read straight into the output), or
   * undefined when n does not fit in the current piece. Call `commit(n)` after filling it.
   */
  reserve(n: number): { buffer: Uint8Array; offset: number } | undefined {
    if (n > this.chunkSize - this.pos) return undefined;
    return { buffer: this.buf, offset: this.pos };
  }

  commit(n: number): void {
    this.pos += n;
    this.size += n;
  }

  /** Pieces ready to go; `all` also cuts the current piece short. */
  take(all = false): Uint8Array[] {
    if (all || this.pos >= this.chunkSize) this.flush();
    const out = this.ready;
    this.ready = [];
    return out;
  }

  private space(n: number): Uint8Array {
    if (n > this.chunkSize - this.pos) {
      this.flush();
      if (n > this.chunkSize) this.buf = new Uint8Array(n);
    }
    return this.buf;
  }

  private flush(): void {
    if (this.pos === 0) return;
    this.ready.push(this.buf.subarray(0, this.pos));
    this.buf = new Uint8Array(this.chunkSize);
    this.pos = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Events → NAR

/**
 * A NarVisitor that writes the NAR the events describe. Feeding it a parser's events gives back
 * the parsed NAR byte for byte. Output goes to `onPiece` whenever about 64 KiB are ready, and
 * at `finish()`.
 */
export class NarEventWriter implements NarVisitor {
  private readonly out: NarOutput;
  private readonly onPiece: (piece: Uint8Array) => void;
  private started = false;

  constructor(onPiece: (piece: Uint8Array) => void, chunkSize = NAR_OUTPUT_CHUNK) {
    this.onPiece = onPiece;
    this.out = new NarOutput(chunkSize);
  }

  directory(dir: NarDirectory): void {
    this.open(dir.name, dir.depth);
    this.out.str(T_DIRECTORY);
    this.emit();
  }

  directoryEnd(dir: NarDirectory): void {
    this.close(dir.depth);
    this.emit();
  }

  file(file: NarFile): void {
    this.open(file.name, file.depth);
    this.out.str(T_REGULAR);
    if (file.executable) {
      this.out.str(T_EXECUTABLE);
      this.out.str(EMPTY);
    }
    this.out.str(T_CONTENTS);
    this.out.u64(file.size);
  }

  fileData(bytes: Uint8Array): void {
    // The parser's pieces are views of its caller's buffers: not ours to keep.
    this.out.bytes(bytes, false);
    this.emit();
  }

  fileEnd(file: NarFile): void {
    this.out.padding(file.size);
    this.close(file.depth);
    this.emit();
  }

  symlink(link: NarSymlink): void {
    this.open(link.name, link.depth);
    this.out.str(T_SYMLINK);
    this.out.str(T_TARGET);
    this.out.str(byteStringToBytes(link.target));
    this.close(link.depth);
    this.emit();
  }

  /** Hands over what is left; returns the NAR size. */
  finish(): number {
    for (const p of this.out.take(true)) this.onPiece(p);
    return this.out.size;
  }

  private open(name: string, depth: number): void {
    if (!this.started) {
      this.out.str(T_MAGIC);
      this.started = true;
    }
    if (depth > 0) {
      this.out.str(T_ENTRY);
      this.out.str(T_OPEN);
      this.out.str(T_NAME);
      this.out.str(byteStringToBytes(name));
      this.out.str(T_NODE);
    }
    this.out.str(T_OPEN);
    this.out.str(T_TYPE);
  }

  private close(depth: number): void {
    this.out.str(T_CLOSE);
    if (depth > 0) this.out.str(T_CLOSE);
  }

  private emit(): void {
    for (const p of this.out.take()) this.onPiece(p);
  }
}
