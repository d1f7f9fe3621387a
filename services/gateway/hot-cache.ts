// An in-memory LRU of blocks that were already verified, bounded by bytes.
//
// It holds the stored zstd frame (not the decompressed bytes): `nar/….nar.zst` — what Nix
// downloads — is the frames concatenated, so a hit costs no CPU at all, and a frame is usually
// smaller than its chunk, so more chunks fit. `.nar` and `/ipfs/` decompress a hit again;
// decompression is deterministic, so bytes that hashed to the CID once still do.
// Only the gateway's block loader inserts, and only after the sha256 check passed.

export interface VerifiedBlock {
  /** One zstd frame, exactly as stored. */
  frame: Uint8Array;
  /** Uncompressed size in bytes. */
  size: number;
  codec: number;
}

/** Map overhead per entry, so that many tiny blocks cannot exceed the budget unnoticed. */
const ENTRY_OVERHEAD = 96;

export class HotCache {
  readonly capacity: number;
  #bytes = 0;
  // A Map iterates in insertion order: re-inserting on every hit makes the first key the least
  // recently used one.
  readonly #entries = new Map<string, VerifiedBlock>();

  constructor(capacityBytes: number) {
    this.capacity = Math.max(0, capacityBytes);
  }

  get bytes(): number {
    return this.#bytes;
  }

  get entries(): number {
    return this.#entries.size;
  }

  get(key: string): VerifiedBlock | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    return entry;
  }

  set(key: string, block: VerifiedBlock): void {
    const cost = block.frame.length + ENTRY_OVERHEAD;
    // A block bigger than an eighth of the cache would flush most of it for one read.
    if (cost > this.capacity / 8) return;
    const old = this.#entries.get(key);
    if (old !== undefined) {
      this.#entries.delete(key);
      this.#bytes -= old.frame.length + ENTRY_OVERHEAD;
    }
    this.#entries.set(key, block);
    this.#bytes += cost;
    for (const [k, v] of this.#entries) {
      if (this.#bytes <= this.capacity) break;
      this.#entries.delete(k);
      this.#bytes -= v.frame.length + ENTRY_OVERHEAD;
    }
  }

  clear(): void {
    this.#entries.clear();
    this.#bytes = 0;
  }
}
