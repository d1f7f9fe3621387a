// A NAR re-encoded on the fly into a compression our store does not keep (xz, bzip2, gzip, br),
// for clients that ask for a file name they uploaded in that compression (uploaded-files.ts).
// The client checks NarHash/NarSize of what it decompresses, not FileHash, so any valid stream
// of the right NAR will do; fast settings keep the CPU cost low.
//
// The input is the NAR's chunks, each verified against its CID before it goes into the encoder.
// A failure (a damaged block, the encoder dying, a stalled client) kills the encoder and cuts
// the connection: the client never gets a complete-looking stream of a truncated NAR. A client
// that goes away kills the encoder too. The output length is not known in advance: chunked,
// and no ranges.
import { spawn } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { finished } from "node:stream/promises";
import * as zlib from "node:zlib";
import type { CID } from "multiformats/cid";
import { NixcasError } from "../../shared/errors.ts";
import { findTool } from "../../shared/node/system-tools.ts";
import type { Gateway, GatewayRequest } from "./context.ts";
import { HttpError } from "./http-errors.ts";
import { manifestPieces, write } from "./manifest-stream.ts";

/** How each compression is produced; anything else is not served. */
const ENCODERS: Record<string, { contentType: string; make: () => Encoder }> = {
  // Single-threaded and at the fastest preset: one download must not take every core.
  xz: { contentType: "application/x-xz", make: () => toolEncoder("xz", ["-c", "-T1", "-1"]) },
  bzip2: { contentType: "application/x-bzip2", make: () => toolEncoder("bzip2", ["-c", "-1"]) },
  gzip: { contentType: "application/gzip", make: () => zlibEncoder(zlib.createGzip({ level: 1 })) },
  br: { contentType: "application/x-brotli", make: () => zlibEncoder(zlib.createBrotliCompress({ params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 2 } })) },
};

const TOOLS: Record<string, string> = { xz: "xz", bzip2: "bzip2" };

/** Whether a NAR can be served re-encoded in `compression` on this machine. */
export function canReencode(compression: string): boolean {
  if (!Object.hasOwn(ENCODERS, compression)) return false;
  const tool = TOOLS[compression];
  return tool === undefined || findTool(tool) !== null;
}

/**
 * Sends the NAR of manifest `root` compressed with `compression` (canReencode must be true).
 * Returns when the response is complete; throws (after killing the encoder) otherwise.
 */
export async function serveReencoded(gw: Gateway, rq: GatewayRequest, root: CID, compression: string): Promise<void> {
  const spec = ENCODERS[compression];
  if (spec === undefined) throw new HttpError(404, "http.not-found", `NARs are not served in compression ${compression}`);
  const { res, signal } = rq;
  res.writeHead(200, { "Content-Type": spec.contentType });
  if (rq.head) return void res.end();

  const encoder = spec.make();
  const onAbort = () => encoder.kill();
  signal.addEventListener("abort", onAbort, { once: true });
  let sent = 0;
  const pumpIn = (async () => {
    for await (const piece of manifestPieces(gw, rq, root, { mode: "bytes" })) {
      if (signal.aborted) return;
      await writeToEncoder(encoder, piece, signal);
    }
    encoder.input.end();
  })();
  const pumpOut = (async () => {
    for await (const piece of encoder.output as AsyncIterable<Uint8Array>) {
      if (signal.aborted) return;
      await write(res, piece, signal);
      sent += piece.length;
    }
  })();
  const all = [pumpIn, pumpOut, encoder.done];
  for (const p of all) p.catch(() => {});
  try {
    await Promise.all(all);
  } catch (err) {
    encoder.kill();
    await Promise.allSettled(all);
    if (signal.aborted) return; // the client left; nothing to report
    throw err;
  } finally {
    signal.removeEventListener("abort", onAbort);
    gw.metrics.bytesServed.inc({ route: rq.route }, sent);
  }
  if (!signal.aborted) res.end();
}

/** A streaming compressor: NAR bytes in, compressed bytes out. */
interface Encoder {
  input: Writable;
  output: Readable;
  /** Resolves when the encoder finished cleanly (exit status 0), rejects otherwise. */
  done: Promise<void>;
  /** Stops it at once (the output is then incomplete). */
  kill(): void;
}

function toolEncoder(tool: string, args: string[]): Encoder {
  const path = findTool(tool);
  if (path === null) throw new NixcasError("reencode.tool-missing", `${tool} is not installed (needed to serve NARs uploaded with that compression)`);
  const child = spawn(path, args, { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (d: string) => {
    if (stderr.length < 2000) stderr += d;
  });
  // Writes after a kill fail with EPIPE: the outcome is reported through `done`.
  child.stdin.on("error", () => {});
  child.stdout.on("error", () => {});
  let killed = false;
  const done = new Promise<void>((resolve, reject) => {
    child.once("error", (err) => reject(new NixcasError("reencode.tool", `cannot run ${tool}: ${err.message}`, { cause: err })));
    child.once("close", (code, sig) => {
      if (code === 0 && !killed) resolve();
      else reject(new NixcasError("reencode.tool", `${tool} ${args.join(" ")} ${killed ? "was stopped" : `exited with ${code ?? sig}`}${stderr ? `: ${stderr.trim()}` : ""}`));
    });
  });
  return {
    input: child.stdin,
    output: child.stdout,
    done,
    kill: () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      killed = true;
      child.kill("SIGKILL");
    },
  };
}

function zlibEncoder(stream: zlib.Gzip | zlib.BrotliCompress): Encoder {
  let killed = false;
  return {
    input: stream,
    output: stream,
    done: finished(stream).then(() => {
      if (killed) throw new NixcasError("reencode.stopped", "the encoder was stopped");
    }),
    kill: () => {
      if (stream.destroyed) return;
      killed = true;
      stream.destroy(new NixcasError("reencode.stopped", "the encoder was stopped"));
    },
  };
}

/** Writes into the encoder with backpressure; fails if the encoder is gone. */
async function writeToEncoder(encoder: Encoder, piece: Uint8Array, signal: AbortSignal): Promise<void> {
  const input = encoder.input;
  if (input.destroyed || input.writableEnded) throw new NixcasError("reencode.closed", "the encoder stopped taking input");
  if (input.write(piece)) return;
  await new Promise<void>((resolve, reject) => {
    const cleanup = () => {
      input.off("drain", onDrain);
      input.off("close", onClose);
      input.off("error", onClose);
      signal.removeEventListener("abort", onDrain);
    };
    const onDrain = () => {
      cleanup();
      resolve();
    };
    const onClose = () => {
      cleanup();
      reject(new NixcasError("reencode.closed", "the encoder stopped taking input"));
    };
    input.on("drain", onDrain);
    input.on("close", onClose);
    input.on("error", onClose);
    signal.addEventListener("abort", onDrain, { once: true });
  });
}
