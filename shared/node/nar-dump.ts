// The NAR of a file-system object, streamed byte-identical to `nix-store --dump`
// (docs/nix-protocol.md §5.1). Node file-system I/O; the format itself is shared/nar.ts and
// shared/nar-writer.ts.
import type { Stats } from "node:fs";
import { closeSync, lstatSync, openSync, readSync, readdirSync, readlinkSync } from "node:fs";
import { open } from "node:fs/promises";
import { NixcasError } from "../errors.ts";
import * as nar from "../nar.ts";
import { NAR_OUTPUT_CHUNK, NarOutput } from "../nar-writer.ts";

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
  return nar.showByteString(nar.bytesToByteString(path));
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
  const maxDepth = options.maxDepth ?? nar.NAR_DEFAULT_LIMITS.maxDepth;
  const out = new NarOutput(chunkSize);
  const stack: DirFrame[] = [];
  out.str(nar.T_MAGIC);

  // Writes one node; a directory only gets its header here and is pushed on the stack.
  // Returns the size of a regular file too large to be read in place (its contents follow).
  const node = (path: Buffer): number => {
    const st = lstatSync(path);
    out.str(nar.T_OPEN);
    out.str(nar.T_TYPE);
    if (st.isFile()) {
      out.str(nar.T_REGULAR);
      if (st.mode & 0o100) {
        out.str(nar.T_EXECUTABLE);
        out.str(nar.EMPTY);
      }
      out.str(nar.T_CONTENTS);
      out.u64(st.size);
      const room = out.reserve(st.size);
      if (!room) return st.size;
      if (st.size > 0) readSmall(path, st.size, room.buffer, room.offset);
      out.commit(st.size);
      out.padding(st.size);
      out.str(nar.T_CLOSE);
    } else if (st.isSymbolicLink()) {
      out.str(nar.T_SYMLINK);
      out.str(nar.T_TARGET);
      out.str(readlinkSync(path, { encoding: "buffer" }));
      out.str(nar.T_CLOSE);
    } else if (st.isDirectory()) {
      out.str(nar.T_DIRECTORY);
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
    out.str(nar.T_CLOSE);
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
      out.str(nar.T_ENTRY);
      out.str(nar.T_OPEN);
      out.str(nar.T_NAME);
      out.str(name);
      out.str(nar.T_NODE);
      const depth = stack.length;
      const size = node(path);
      if (size >= 0) yield* large(path, size);
      if (stack.length === depth) out.str(nar.T_CLOSE); // not a directory: its entry is complete
    } else {
      stack.pop();
      out.str(nar.T_CLOSE);
      if (stack.length > 0) out.str(nar.T_CLOSE);
    }
    for (const p of out.take()) yield p;
  }
  for (const p of out.take(true)) yield p;
}
