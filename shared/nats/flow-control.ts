// A weighted semaphore: how many publishes, or how many reply bytes, a connection may have in
// flight. NATS has no flow control of its own for request/reply: too many publishes in flight
// and acks time out; too many reply bytes and the server cuts the connection as a slow consumer.
// Waiters are served in order, so a large request is not starved by a stream of small ones.

export class Semaphore {
  readonly capacity: number;
  #available: number;
  #waiters: Array<{ weight: number; resolve: () => void }> = [];

  constructor(capacity: number) {
    if (!Number.isFinite(capacity) || capacity < 1) throw new RangeError(`semaphore capacity must be >= 1, got ${capacity}`);
    this.capacity = capacity;
    this.#available = capacity;
  }

  get available(): number {
    return this.#available;
  }

  get waiting(): number {
    return this.#waiters.length;
  }

  /** Waits until `weight` units are free and takes them; weights above capacity are clamped. */
  acquire(weight = 1): Promise<number> {
    const w = Math.min(Math.max(weight, 0), this.capacity);
    if (this.#waiters.length === 0 && this.#available >= w) {
      this.#available -= w;
      return Promise.resolve(w);
    }
    return new Promise((resolve) => this.#waiters.push({ weight: w, resolve: () => resolve(w) }));
  }

  /** Returns units taken by `acquire` (pass what acquire resolved with). */
  release(weight = 1): void {
    this.#available = Math.min(this.capacity, this.#available + weight);
    while (this.#waiters.length > 0 && this.#available >= this.#waiters[0]!.weight) {
      const next = this.#waiters.shift()!;
      this.#available -= next.weight;
      next.resolve();
    }
  }

  /** Runs `fn` holding `weight` units. */
  async with<T>(weight: number, fn: () => Promise<T>): Promise<T> {
    const taken = await this.acquire(weight);
    try {
      return await fn();
    } finally {
      this.release(taken);
    }
  }
}

/** Maps `items` through `fn` with at most `limit` calls running; results in input order. */
export async function mapBounded<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        results[i] = await fn(items[i]!, i);
      } catch (err) {
        failed = true; // the others stop taking new items
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
