// At most N tasks running at once, started one by one by a producer that must not run ahead:
// how block puts are published (each holds a frame in memory until its ack; the chunker, blobs,
// `nixcas push`). A task that fails makes the next add(), and drain(), throw that first failure;
// the producer stops, then settle() lets what is still running finish before it reports.

export class BoundedTasks {
  readonly #max: number;
  readonly #running = new Set<Promise<void>>();
  #failure: { error: unknown } | null = null;

  constructor(maxRunning: number) {
    if (!Number.isSafeInteger(maxRunning) || maxRunning < 1) throw new RangeError(`maxRunning must be a positive integer, got ${maxRunning}`);
    this.#max = maxRunning;
  }

  /** Starts `task` once fewer than the maximum are running. Throws the first failure of an earlier task. */
  async add(task: () => Promise<unknown>): Promise<void> {
    this.check();
    while (this.#running.size >= this.#max) {
      await Promise.race(this.#running);
      this.check();
    }
    const run: Promise<void> = task().then(
      () => {},
      (error: unknown) => {
        this.#failure ??= { error };
      },
    );
    const tracked = run.finally(() => this.#running.delete(tracked));
    this.#running.add(tracked);
  }

  /** Waits for every task; throws the first failure. */
  async drain(): Promise<void> {
    await Promise.all(this.#running);
    this.check();
  }

  /** Waits for every task, ignoring failures (before reporting another error). */
  async settle(): Promise<void> {
    await Promise.all(this.#running);
  }

  /** Throws the first failure of a task, if one has failed. */
  check(): void {
    if (this.#failure !== null) throw this.#failure.error;
  }
}
