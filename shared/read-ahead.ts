// Ordered reads with read-ahead: one read (a direct get of a block) is a round trip, so many are
// kept in flight while their results are consumed strictly in order. The reads in flight are
// bounded by count and, optionally, by weight (bytes) — per reader and in a budget shared by
// many readers — so a fast producer cannot flood the connection (slow-consumer cut-off) or the
// heap, and a slow consumer holds at most one window. Used for NAR downloads (gateway), the
// indexer's pass over stored frames, and blob reads.

/** Weight shared by many readers (e.g. all responses of a gateway). */
export interface ReadAheadBudget {
  /** Takes `n` if available; false (nothing taken) otherwise. */
  tryTake(n: number): boolean;
  /** Takes `n` even beyond what is available (the one read a reader always may make). */
  take(n: number): void;
  give(n: number): void;
}

export interface ReadAheadOptions<T> {
  /** Reads in flight at most. */
  maxInFlight: number;
  /** The weight of an item's read (its bytes); default 0. */
  weight?: (item: T) => number;
  /** Sum of the weights in flight at most; the next read always may start when none is in flight. */
  maxWeightInFlight?: number;
  /** Shared weight: beyond the next read, a reader reads ahead only while the budget has room. */
  budget?: ReadAheadBudget;
  /** Stops yielding once aborted (the consumer has gone). */
  signal?: AbortSignal;
}

/**
 * Starts `read` for the items of `items` ahead of the consumer and yields the results in item
 * order. A failed read is thrown when its turn comes. When the generator finishes — consumed,
 * stopped by the consumer, aborted or failed — no read it started is still running, and what
 * it took from the budget is given back.
 */
export async function* readAhead<T, R>(items: AsyncIterable<T>, read: (item: T) => Promise<R>, options: ReadAheadOptions<T>): AsyncGenerator<{ item: T; result: R }> {
  const { maxInFlight, budget, signal } = options;
  const weightOf = options.weight ?? (() => 0);
  const maxWeight = options.maxWeightInFlight ?? Infinity;
  const source = items[Symbol.asyncIterator]();
  const queue: Array<{ item: T; weight: number; result: Promise<R> }> = [];
  let weightInFlight = 0;
  let next: { item: T; weight: number } | undefined;
  let exhausted = false;
  try {
    while (true) {
      while (!exhausted && queue.length < maxInFlight) {
        if (next === undefined) {
          const r = await source.next();
          if (r.done) {
            exhausted = true;
            break;
          }
          next = { item: r.value, weight: weightOf(r.value) };
        }
        if (queue.length > 0 && weightInFlight + next.weight > maxWeight) break;
        if (budget) {
          if (queue.length === 0) budget.take(next.weight);
          else if (!budget.tryTake(next.weight)) break;
        }
        const result = read(next.item);
        // Thrown when its turn comes; until then, keep it from being an unhandled rejection.
        result.catch(() => {});
        queue.push({ ...next, result });
        weightInFlight += next.weight;
        next = undefined;
      }
      const head = queue.shift();
      if (head === undefined) return;
      weightInFlight -= head.weight;
      budget?.give(head.weight);
      const result = await head.result;
      if (signal?.aborted) return;
      yield { item: head.item, result };
    }
  } finally {
    const abandoned = queue.splice(0);
    for (const p of abandoned) budget?.give(p.weight);
    await Promise.allSettled(abandoned.map((p) => p.result));
    await source.return?.(undefined);
  }
}
