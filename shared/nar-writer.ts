// Writing NARs: `dumpPath` streams the NAR of a file-system object byte-identical to
// `nix-store --dump` (nix-protocol.md §5.1); `NarEventWriter` turns parser events back into NAR
// bytes (for re-serialising, filtering, tests). Both write through `NarOutput`, which coalesces
// the many small tokens into pieces of about 64 KiB, because a consumer (hash, socket, chunker)
// pays per piece, not per byte.
import type { Stats } from "node:fs";
import { closeSync, lstatSync, openSync, readSync, readdirSync, readlinkSync } from "node:fs";
import { open } from "node:fs/promises";
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

// ---------------------------------------------------------------------------------------------
// File system → NAR
//
// Metadata (lstat, readdir, readlink) and files that fit in the current output piece are read
// with synchronous calls; only large files are read asynchronously, in `readSize` pieces.
// Measured on the dev VM, 3000 small files: all-async (a thread-pool round trip per call,
// four calls a file) ~150 µs a file, this ~15 µs. A synchronous call holds the event loop for
// one small read from the page cache; that suits the CLI and `push`, which is what dumps paths
// (the services receive NARs, they never dump).

export interface DumpOptions {
  /** Output piece size (small tokens and small files are coalesced up to this). Default 64 KiB. */
  chunkSize?: number;
  /** Large files are read in pieces of this size. Default 1 MiB. */
  readSize?: number;
  /** Refuse trees whose nesting reaches this (root = 0), like Nix ≥ 2.35. Default 64. */
  maxDepth?: number;
}

interface DirFrame {
  path: Buffer;
  names: Buffer[];
  next: number;
}

const SLASH = Buffer.from("/");

function show(path: Uint8Array): string {
  return showByteString(bytesToByteString(path));
}

function kindOf(st: Stats): string {
  if (st.isSocket()) return "a socket";
  if (st.isFIFO()) return "a FIFO";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  return "an unknown kind of file";
}

function shrank(path: Uint8Array, done: number, size: number): NixcasError {
  return new NixcasError("nar.dump.changed", `${show(path)} shrank while being read (${done} of ${size} bytes)`);
}

/** Reads exactly `size` bytes of a small file into buffer[offset…]. */
function readSmall(path: Buffer, size: number, buffer: Uint8Array, offset: number): void {
  const fd = openSync(path, "r");
  try {
    let done = 0;
    while (done < size) {
      const n = readSync(fd, buffer, offset + done, size - done, done);
      if (n === 0) throw shrank(path, done, size);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** A large file in fresh pieces of at most `readSize` bytes. */
async function* readLarge(path: Buffer, size: number, readSize: number): AsyncGenerator<Uint8Array> {
  const fh = await open(path, "r");
  try {
    for (let done = 0; done < size; ) {
      const n = Math.min(readSize, size - done);
      const piece = Buffer.allocUnsafeSlow(n);
      for (let got = 0; got < n; ) {
        const { bytesRead } = await fh.read(piece, got, n - got, done + got);
        if (bytesRead === 0) throw shrank(path, done + got, size);
        got += bytesRead;
      }
      done += n;
      yield piece;
    }
  } finally {
    await fh.close();
  }
}

/**
 * Streams the NAR of the file, directory or symlink at `fsPath`, byte-identical to
 * `nix-store --dump`: entries sorted bytewise by their raw names, executable when the owner may
 * execute (S_IXUSR), symlinks not followed, file contents read in bounded pieces. Pieces are
 * fresh buffers the consumer may keep. Errors (NixcasError): `nar.dump.unsupported` (sockets,
 * FIFOs, devices), `nar.dump.depth`, `nar.dump.changed` (a file shrank while read), each
 * naming the path; file-system errors (ENOENT, EACCES…) as Node raises them.
 */
export async function* dumpPath(fsPath: string | Uint8Array, options: DumpOptions = {}): AsyncGenerator<Uint8Array> {
  const chunkSize = options.chunkSize ?? NAR_OUTPUT_CHUNK;
  const readSize = options.readSize ?? 1024 * 1024;
  const maxDepth = options.maxDepth ?? NAR_DEFAULT_LIMITS.maxDepth;
  const out = new NarOutput(chunkSize);
  const stack: DirFrame[] = [];
  out.str(T_MAGIC);

  // Writes one node; a directory only gets its header here and is pushed on the stack.
  // Returns the size of a regular file too large to be read in place (its contents follow).
  const node = (path: Buffer): number => {
    const st = lstatSync(path);
    out.str(T_OPEN);
    out.str(T_TYPE);
    if (st.isFile()) {
      out.str(T_REGULAR);
      if (st.mode & 0o100) {
        out.str(T_EXECUTABLE);
        out.str(EMPTY);
      }
      out.str(T_CONTENTS);
      out.u64(st.size);
      const room = out.reserve(st.size);
      if (!room) return st.size;
      if (st.size > 0) readSmall(path, st.size, room.buffer, room.offset);
      out.commit(st.size);
      out.padding(st.size);
      out.str(T_CLOSE);
    } else if (st.isSymbolicLink()) {
      out.str(T_SYMLINK);
      out.str(T_TARGET);
      out.str(readlinkSync(path, { encoding: "buffer" }));
      out.str(T_CLOSE);
    } else if (st.isDirectory()) {
      out.str(T_DIRECTORY);
      const names = readdirSync(path, { encoding: "buffer" });
      names.sort(Buffer.compare);
      stack.push({ path, names, next: 0 });
    } else {
      throw new NixcasError("nar.dump.unsupported", `cannot put ${show(path)} in a NAR: it is ${kindOf(st)}`);
    }
    return -1;
  };

  // A regular file whose contents did not fit in the current piece.
  async function* large(path: Buffer, size: number): AsyncGenerator<Uint8Array> {
    for (const p of out.take(true)) yield p;
    for await (const p of readLarge(path, size, readSize)) {
      out.bytes(p); // a fresh piece: passed through, not copied
      yield* out.take();
    }
    out.padding(size);
    out.str(T_CLOSE);
  }

  const root = Buffer.from(fsPath);
  const rootSize = node(root);
  if (rootSize >= 0) yield* large(root, rootSize);
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!;
    if (frame.next < frame.names.length) {
      const name = frame.names[frame.next++]!;
      const path = Buffer.concat([frame.path, SLASH, name]);
      if (stack.length >= maxDepth) {
        throw new NixcasError("nar.dump.depth", `${show(path)} is nested ${stack.length} directories deep; the limit is below ${maxDepth}`);
      }
      out.str(T_ENTRY);
      out.str(T_OPEN);
      out.str(T_NAME);
      out.str(name);
      out.str(T_NODE);
      const depth = stack.length;
      const size = node(path);
      if (size >= 0) yield* large(path, size);
      if (stack.length === depth) out.str(T_CLOSE); // not a directory: its entry is complete
    } else {
      stack.pop();
      out.str(T_CLOSE);
      if (stack.length > 0) out.str(T_CLOSE);
    }
    for (const p of out.take()) yield p;
  }
  for (const p of out.take(true)) yield p;
}
