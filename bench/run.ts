// `npm run bench [-- <suite>…]`: runs the benchmark suites and prints one table. Each suite is a
// module bench/<name>.ts exporting `run(ctx): Promise<BenchRow[]>`; every figure comes with a
// baseline measured in the same run on the same machine, and the table shows their ratio.
// Adding a suite is one line in SUITES.
import { availableParallelism, cpus } from "node:os";

export interface BenchRow {
  suite: string;
  case: string;
  value: number;
  /** "MB/s" (MB = 2^20 bytes), "ms", "µs" or "MiB". */
  unit: string;
  baseline?: number;
  baselineName?: string;
  /** For times: the ratio shown is baseline / value, so that above 1 is always better. */
  lowerIsBetter?: boolean;
  note?: string;
}

export interface BenchContext {
  /** Progress lines (stderr), so stdout stays the table. */
  log(message: string): void;
}

type Suite = { run(ctx: BenchContext): Promise<BenchRow[]> };

const SUITES: Record<string, () => Promise<Suite>> = {
  chunking: () => import("./chunking.ts"),
  cluster: () => import("./cluster.ts"),
  "put-verify": () => import("./put-verify.ts"),
  tiering: () => import("./tiering.ts"),
  tracing: () => import("./tracing.ts"),
};

function formatNumber(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
}

export function formatTable(rows: BenchRow[]): string {
  const header = ["suite", "case", "value", "baseline", "ratio", "note"];
  const body = rows.map((r) => {
    const ratio = r.baseline === undefined || r.baseline === 0 ? "" : formatNumber(r.lowerIsBetter ? r.baseline / r.value : r.value / r.baseline);
    const baseline = r.baseline === undefined ? "" : `${formatNumber(r.baseline)} ${r.unit} (${r.baselineName ?? "baseline"})`;
    return [r.suite, r.case, `${formatNumber(r.value)} ${r.unit}`, baseline, ratio, r.note ?? ""];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) => "| " + cells.map((c, i) => (i === 2 || i === 4 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(" | ") + " |";
  return [line(header), "|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|", ...body.map(line)].join("\n") + "\n";
}

async function main(argv: string[]): Promise<number> {
  const unknown = argv.filter((name) => !(name in SUITES));
  if (unknown.length > 0) {
    process.stderr.write(`bench: unknown suite${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")}; suites: ${Object.keys(SUITES).join(", ")}\n`);
    return 2;
  }
  const names = argv.length > 0 ? argv : Object.keys(SUITES);
  const ctx: BenchContext = { log: (message) => process.stderr.write(`bench: ${message}\n`) };
  ctx.log(`node ${process.version}, ${availableParallelism()} cores (${cpus()[0]?.model ?? "unknown CPU"})`);
  const rows: BenchRow[] = [];
  let failed = false;
  for (const name of names) {
    ctx.log(`suite ${name}`);
    try {
      const suite = await SUITES[name]!();
      rows.push(...(await suite.run(ctx)));
    } catch (err) {
      failed = true;
      ctx.log(`suite ${name} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
  }
  process.stdout.write(formatTable(rows));
  return failed ? 1 : 0;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
