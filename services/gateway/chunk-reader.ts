// Pipelined chunk reads for responses (shared/read-ahead.ts): many direct gets in flight, results
// yielded strictly in order. Both the number of reads in flight and the bytes they will bring
// are bounded, per response and across all responses of the gateway (ReadBudget), so a slow
// HTTP client holds at most one window of chunks and a thousand downloads do not each hold one.
import type { CID } from "multiformats/cid";
import type { ManifestChunk } from "../../shared/manifest.ts";
import { readAhead, type ReadAheadBudget } from "../../shared/read-ahead.ts";
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
export class ReadBudget implements ReadAheadBudget {
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

/**
 * Loads every chunk of `chunks` (in order) through `loader` and yields them in the same order.
 * Stops (and leaves no read running) when the consumer stops or `signal` aborts.
 */
export async function* readChunks(
  chunks: AsyncIterable<ManifestChunk>,
  loader: BlockLoader,
  window: ReadWindow = DEFAULT_READ_WINDOW,
  signal?: AbortSignal,
  budget?: ReadBudget,
): AsyncGenerator<{ chunk: ManifestChunk; block: LoadedBlock }> {
  const reads = readAhead(chunks, (chunk) => loader.load(chunk.cid as CID, chunk.size), {
    maxInFlight: window.maxInFlight,
    weight: (chunk) => chunk.size,
    maxWeightInFlight: window.maxBytesInFlight,
    ...(budget ? { budget } : {}),
    ...(signal ? { signal } : {}),
  });
  for await (const { item, result } of reads) yield { chunk: item, block: result };
}
