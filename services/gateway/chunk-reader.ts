// Pipelined reads: one direct get per chunk is a round trip to JetStream, so a NAR is read with
// many gets in flight while the results are yielded strictly in order. Both the number of reads
// in flight and the bytes they will bring are bounded, so a fast reader cannot flood the NATS
// connection (slow-consumer cut-off) or the heap, and a slow HTTP client holds at most one
// window of chunks.
import type { CID } from "multiformats/cid";
import type { ManifestChunk } from "../../shared/manifest.ts";
import type { BlockLoader, LoadedBlock } from "./block-loader.ts";

export interface ReadWindow {
  /** Reads in flight at most. */
  maxInFlight: number;
  /** Sum of the (uncompressed) sizes of the chunks in flight at most; one chunk always fits. */
  maxBytesInFlight: number;
}

export const DEFAULT_READ_WINDOW: ReadWindow = { maxInFlight: 32, maxBytesInFlight: 8 * 1024 * 1024 };

/**
 * Read-ahead bytes shared by all responses of a gateway, so a thousand parallel downloads do not
 * each hold a full window: a response reads ahead only while the shared budget has room, and
 * always may read the one chunk it needs next (so nobody waits on anybody).
 */
export class ReadBudget {
  readonly capacity: number;
  #available: number;
  constructor(capacity: number) {
    this.capacity = capacity;
    this.#available = capacity;
  }
  get available(): number {
    return this.#available;
  }
  tryTake(n: number): boolean {
    if (n > this.#available) return false;
    this.#available -= n;
    return true;
  }
  take(n: number): void {
    this.#available -= n;
  }
  give(n: number): void {
    this.#available += n;
  }
}

interface Pending {
  chunk: ManifestChunk;
  result: Promise<LoadedBlock>;
}

/**
 * Loads every chunk of `chunks` (in order) through `loader` and yields them in the same order.
 * Stops (and leaves no read unobserved) when the consumer stops or `signal` aborts.
 */
export async function* readChunks(
  chunks: AsyncIterable<ManifestChunk>,
  loader: BlockLoader,
  window: ReadWindow = DEFAULT_READ_WINDOW,
  signal?: AbortSignal,
  budget?: ReadBudget,
): AsyncGenerator<{ chunk: ManifestChunk; block: LoadedBlock }> {
  const source = chunks[Symbol.asyncIterator]();
  const queue: Pending[] = [];
  let bytesInFlight = 0;
  let next: ManifestChunk | undefined;
  let exhausted = false;
  try {
    while (true) {
      // Fill the window.
      while (!exhausted && queue.length < window.maxInFlight) {
        if (next === undefined) {
          const r = await source.next();
          if (r.done) {
            exhausted = true;
            break;
          }
          next = r.value;
        }
        if (queue.length > 0 && bytesInFlight + next.size > window.maxBytesInFlight) break;
        if (budget) {
          if (queue.length === 0) budget.take(next.size);
          else if (!budget.tryTake(next.size)) break;
        }
        const result = loader.load(next.cid as CID, next.size);
        // Failures are raised when their turn comes; until then, keep them from being "unhandled".
        result.catch(() => {});
        queue.push({ chunk: next, result });
        bytesInFlight += next.size;
        next = undefined;
      }
      const head = queue.shift();
      if (head === undefined) return;
      bytesInFlight -= head.chunk.size;
      budget?.give(head.chunk.size);
      const block = await head.result;
      if (signal?.aborted) return;
      yield { chunk: head.chunk, block };
    }
  } finally {
    // Reads still queued when the consumer stops give their budget back.
    for (const p of queue.splice(0)) budget?.give(p.chunk.size);
    await source.return?.(undefined);
  }
}
