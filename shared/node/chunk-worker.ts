// A thread of the chunk worker pool (chunk-pipeline.ts). It does the per-byte work that can
// run in parallel: sha256 and zstd of each chunk of a batch, and the running sha256 of whole
// NARs ("lanes": one NAR's bytes always go to the same thread, in order).
//
// Batches arrive as transferred ArrayBuffers and go back the same way (the main thread reuses
// them), results too: nothing is copied between threads. (SharedArrayBuffers were measured and
// dropped: V8 copies into them at a fifth of the speed of a plain ArrayBuffer.)
import { createHash, hash, type Hash } from "node:crypto";
import { parentPort } from "node:worker_threads";
import { compressChunk } from "../zstd.ts";

export type WorkerRequest =
  /**
   * sha256 + zstd of consecutive chunks at the start of `buffer`; `whole` also hashes them all
   * together. The buffer comes back in the reply.
   */
  | { op: "chunks"; id: number; buffer: ArrayBuffer; lengths: number[]; level: number; whole: boolean }
  /** Feeds buffer[0, length) to lane `lane`'s running sha256 (created on first use); the buffer comes back. */
  | { op: "lane-update"; id: number; lane: number; buffer: ArrayBuffer; length: number }
  | { op: "lane-final"; id: number; lane: number }
  | { op: "lane-drop"; id: number; lane: number };

export interface ChunksResult {
  /** 32 bytes per chunk. */
  digests: ArrayBuffer;
  /** The zstd frames, back to back. */
  frames: ArrayBuffer;
  frameLengths: number[];
  /** sha256 of all the chunks together, when asked. */
  whole?: ArrayBuffer;
}

export type WorkerReply =
  | ({ id: number; ok: true } & Partial<ChunksResult> & { digest?: ArrayBuffer; buffer?: ArrayBuffer })
  | { id: number; ok: false; error: { name: string; message: string; code?: string } };

const port = parentPort;
if (port === null) throw new Error("chunk-worker.ts must run as a worker thread (see ChunkWorkerPool)");

const lanes = new Map<number, Hash>();

function chunks(msg: Extract<WorkerRequest, { op: "chunks" }>): { reply: WorkerReply; transfer: ArrayBuffer[] } {
  const bytes = new Uint8Array(msg.buffer);
  const digests = new Uint8Array(32 * msg.lengths.length);
  const frames: Uint8Array[] = [];
  let framesTotal = 0;
  let at = 0;
  for (let i = 0; i < msg.lengths.length; i++) {
    const chunk = bytes.subarray(at, at + msg.lengths[i]!);
    digests.set(hash("sha256", chunk, "buffer"), 32 * i);
    const frame = compressChunk(chunk, msg.level);
    frames.push(frame);
    framesTotal += frame.length;
    at += chunk.length;
  }
  // zlib hands out views into its own larger buffers: pack them so one exact buffer moves.
  const packed = new Uint8Array(framesTotal);
  const frameLengths: number[] = [];
  let p = 0;
  for (const frame of frames) {
    packed.set(frame, p);
    p += frame.length;
    frameLengths.push(frame.length);
  }
  const reply: WorkerReply = { id: msg.id, ok: true, digests: digests.buffer, frames: packed.buffer, frameLengths, buffer: msg.buffer };
  const transfer = [digests.buffer, packed.buffer, msg.buffer];
  if (msg.whole) {
    const whole = msg.lengths.length === 1 ? digests.slice(0, 32) : new Uint8Array(hash("sha256", bytes.subarray(0, at), "buffer"));
    reply.whole = whole.buffer;
    transfer.push(whole.buffer);
  }
  return { reply, transfer };
}

function handle(msg: WorkerRequest): { reply: WorkerReply; transfer: ArrayBuffer[] } {
  switch (msg.op) {
    case "chunks":
      return chunks(msg);
    case "lane-update": {
      let lane = lanes.get(msg.lane);
      if (lane === undefined) lanes.set(msg.lane, (lane = createHash("sha256")));
      lane.update(new Uint8Array(msg.buffer, 0, msg.length));
      return { reply: { id: msg.id, ok: true, buffer: msg.buffer }, transfer: [msg.buffer] };
    }
    case "lane-final": {
      const lane = lanes.get(msg.lane) ?? createHash("sha256");
      lanes.delete(msg.lane);
      const digest = new Uint8Array(lane.digest());
      return { reply: { id: msg.id, ok: true, digest: digest.buffer }, transfer: [digest.buffer] };
    }
    case "lane-drop":
      lanes.delete(msg.lane);
      return { reply: { id: msg.id, ok: true }, transfer: [] };
    default:
      throw new Error(`chunk worker: unknown request ${JSON.stringify((msg as { op?: unknown }).op)}`);
  }
}

port.on("message", (msg: WorkerRequest) => {
  let out: { reply: WorkerReply; transfer: ArrayBuffer[] };
  try {
    out = handle(msg);
  } catch (err) {
    const e = err as { name?: string; message?: string; code?: unknown };
    out = {
      reply: { id: msg.id, ok: false, error: { name: e.name ?? "Error", message: e.message ?? String(err), ...(typeof e.code === "string" ? { code: e.code } : {}) } },
      transfer: [],
    };
  }
  port.postMessage(out.reply, out.transfer);
});
