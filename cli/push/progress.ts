// Progress of a push on stderr. On a terminal: one line, redrawn a few times a second (paths
// done/total, NAR bytes hashed, new vs deduplicated chunks, throughput), with failures and
// warnings printed above it. Otherwise (CI logs, pipes): one line per path as it finishes.
// At the end a summary, in both cases.
import { emptyCounters, type BlockCounters } from "./block-uploader.ts";

export interface PushTotals extends BlockCounters {
  /** Paths considered (the closure, or the paths named with --no-closure). */
  paths: number;
  pushed: number;
  /** Already in the cache: nothing to do. */
  skipped: number;
  failed: number;
  /** NAR bytes read and hashed locally. */
  narBytes: number;
  elapsedMs: number;
  failures: Array<{ storePath: string; code: string; message: string }>;
}

export function emptyTotals(): PushTotals {
  return { paths: 0, pushed: 0, skipped: 0, failed: 0, narBytes: 0, elapsedMs: 0, failures: [], ...emptyCounters() };
}

export interface ProgressOutput {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

const REDRAW_MS = 200;

export class Progress {
  readonly totals: PushTotals;
  readonly #out: ProgressOutput;
  readonly #tty: boolean;
  readonly #started = performance.now();
  readonly #active = new Set<string>();
  #timer: NodeJS.Timeout | null = null;
  #lineShown = false;

  constructor(out: ProgressOutput, totals: PushTotals) {
    this.#out = out;
    this.#tty = out.isTTY === true;
    this.totals = totals;
    if (this.#tty) {
      this.#timer = setInterval(() => this.#redraw(), REDRAW_MS);
      this.#timer.unref();
    }
  }

  /** A message that stays (a warning, a failure), above the live line on a terminal. */
  note(text: string): void {
    this.#clearLine();
    this.#out.write(text + "\n");
    this.#redraw();
  }

  pathStarted(storePath: string): void {
    this.#active.add(storePath);
  }

  /** `uploadMs`: dump + chunk + upload; `ms`: until the cache reported it done. */
  pathPushed(storePath: string, c: BlockCounters, narSize: number, uploadMs: number, ms: number): void {
    this.#active.delete(storePath);
    this.totals.pushed++;
    if (!this.#tty) {
      this.#out.write(
        `pushed ${storePath}: NAR ${formatBytes(narSize)}, ${c.newChunks} new chunks + ${c.dedupChunks} already cached, uploaded ${formatBytes(c.uploadedBytes)} in ${c.newBlocks} blocks (${(ms / 1000).toFixed(1)} s, of which ${(uploadMs / 1000).toFixed(1)} s reading and uploading)\n`,
      );
    }
  }

  pathFailed(storePath: string, code: string, message: string): void {
    this.#active.delete(storePath);
    this.totals.failed++;
    this.totals.failures.push({ storePath, code, message });
    this.note(`FAILED ${storePath}: ${message}`);
  }

  /** Stops redrawing and clears the live line. */
  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    this.#clearLine();
    this.totals.elapsedMs = performance.now() - this.#started;
  }

  #redraw(): void {
    if (!this.#tty || this.#timer === null) return;
    const t = this.totals;
    const seconds = (performance.now() - this.#started) / 1000;
    const done = t.pushed + t.skipped + t.failed;
    const current = [...this.#active].map((p) => p.slice(p.lastIndexOf("/") + 1 + 33)).join(", ");
    let line =
      `[${done}/${t.paths} paths] ${formatBytes(t.narBytes)} hashed, ${t.newChunks} new / ${t.dedupChunks} dedup chunks, ` +
      `${formatBytes(t.uploadedBytes)} uploaded, ${formatRate(t.narBytes, seconds)}${current ? ` | ${current}` : ""}`;
    // A pty without a window size reports 0 columns.
    const columns = this.#out.columns !== undefined && this.#out.columns >= 20 ? this.#out.columns : 100;
    const width = columns - 1;
    if (line.length > width) line = line.slice(0, Math.max(0, width - 1)) + "…";
    this.#out.write(`\r\x1b[K${line}`);
    this.#lineShown = true;
  }

  #clearLine(): void {
    if (this.#lineShown) this.#out.write("\r\x1b[K");
    this.#lineShown = false;
  }
}

/** The end-of-push summary, several lines. */
export function formatSummary(t: PushTotals): string {
  const seconds = t.elapsedMs / 1000;
  const chunkBytes = t.newChunkBytes + t.dedupChunkBytes;
  const dedup = chunkBytes === 0 ? 0 : t.dedupChunkBytes / chunkBytes;
  const lines = [
    `nixcas push: ${t.pushed} pushed, ${t.skipped} already in the cache, ${t.failed} failed (of ${t.paths} paths) in ${seconds.toFixed(1)} s`,
    `  NAR bytes hashed: ${formatBytes(t.narBytes)} (${formatRate(t.narBytes, seconds)})`,
    `  uploaded: ${t.newBlocks} new blocks, ${formatBytes(t.uploadedBytes)} compressed (${t.newChunks} new chunks, ${formatBytes(t.newChunkBytes)} uncompressed)`,
    `  deduplicated: ${t.dedupChunks} chunks, ${formatBytes(t.dedupChunkBytes)} already in the cache; dedup ratio ${(dedup * 100).toFixed(1)}%`,
  ];
  for (const f of t.failures) lines.push(`  failed: ${f.storePath}: [${f.code}] ${f.message}`);
  return lines.join("\n") + "\n";
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

function formatRate(bytes: number, seconds: number): string {
  return seconds <= 0 ? "-" : `${(bytes / 1e6 / seconds).toFixed(1)} MB/s`;
}
