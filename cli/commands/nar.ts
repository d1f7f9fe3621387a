// `nixcas nar dump <path>`: the NAR of a file, directory or symlink on stdout (= nix-store --dump).
// `nixcas nar ls <file.nar | ->`: the `.ls` listing of a NAR, exactly the bytes Nix 2.8 writes
// (no trailing newline, so `nixcas nar ls x.nar > x.ls` gives the file a cache would hold).
// The NAR is streamed through the strict parser; a corrupt one fails with the byte offset.
import { createReadStream } from "node:fs";
import { NixcasError } from "../../shared/errors.ts";
import { formatNarListing, narListing } from "../../shared/nar-listing.ts";
import { dumpPath } from "../../shared/node/nar-dump.ts";

const USAGE = `usage: nixcas nar dump <path>            write the NAR of <path> to stdout (like nix-store --dump)
       nixcas nar ls <file.nar | ->     print the .ls listing of a NAR (JSON, as Nix 2.8 writes it)
`;

/** The output is gone (EPIPE: the reader exited, e.g. `| head`): stop quietly. */
class OutputClosed extends Error {}

/**
 * Writes pieces to stdout with backpressure. stdout errors arrive as events, possibly while no
 * write is pending, so one listener stays attached for the whole run.
 */
async function writeAll(pieces: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<void> {
  const out = process.stdout;
  let failed: Error | undefined;
  let wake: (() => void) | undefined;
  const onError = (err: Error) => {
    failed = err;
    wake?.();
  };
  const onDrain = () => wake?.();
  out.on("error", onError);
  out.on("drain", onDrain);
  const check = () => {
    if (!failed) return;
    if ((failed as NodeJS.ErrnoException).code === "EPIPE") throw new OutputClosed();
    throw failed;
  };
  const settle = () => new Promise<void>((resolve) => (wake = resolve));
  try {
    for await (const piece of pieces) {
      check();
      if (!out.write(piece)) {
        const waiting = settle();
        if (!failed) await waiting;
        check();
      }
    }
    // Make sure what is buffered got out (or failed) before we report success.
    await new Promise<void>((resolve) =>
      out.write(new Uint8Array(0), (err) => {
        failed ??= err ?? undefined;
        resolve();
      }),
    );
    check();
  } finally {
    out.off("drain", onDrain);
    // Keep swallowing late EPIPE errors: the process is about to exit.
    if (failed) out.on("error", () => {});
    else out.off("error", onError);
  }
}

function fail(message: string): number {
  process.stderr.write(`nixcas nar: ${message}\n`);
  return 1;
}

/** Errors we expect from bad input or the file system: a message, exit 1. Anything else is a bug. */
function reportable(err: unknown, what: string): string | undefined {
  if (err instanceof NixcasError) return `${what}: ${err.message}`;
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e.code === "string" && typeof e.syscall === "string") return `${what}: ${e.message}`;
  return undefined;
}

async function dump(path: string): Promise<number> {
  try {
    await writeAll(dumpPath(path));
    return 0;
  } catch (err) {
    if (err instanceof OutputClosed) return 0;
    const message = reportable(err, `cannot dump ${path}`);
    if (message === undefined) throw err;
    return fail(message);
  }
}

async function ls(file: string): Promise<number> {
  try {
    const source = file === "-" ? process.stdin : createReadStream(file, { highWaterMark: 1 << 20 });
    const listing = await narListing(source as AsyncIterable<Uint8Array>);
    await writeAll([formatNarListing(listing)]);
    return 0;
  } catch (err) {
    if (err instanceof OutputClosed) return 0;
    const message = reportable(err, file === "-" ? "stdin" : file);
    if (message === undefined) throw err;
    return fail(message);
  }
}

export async function run(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h" || sub === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  if ((sub === "dump" || sub === "ls") && rest.length === 1 && rest[0] !== "") {
    return sub === "dump" ? dump(rest[0]!) : ls(rest[0]!);
  }
  process.stderr.write(sub === "dump" || sub === "ls" ? `nixcas nar ${sub}: expected exactly one argument\n${USAGE}` : USAGE);
  return 2;
}
