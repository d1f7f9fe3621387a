// Prometheus text exposition (format 0.0.4, https://prometheus.io/docs/instrumenting/exposition_formats/)
// for `/metrics`, without a client library: counters and gauges keyed by their label values.
// One registry per service instance (no global one), so tests can run several services in one
// process and read each one's numbers. The gateway serves its registry on its HTTP port; the
// other services on NIXCAS_HEALTH_PORT (shared/nats/service-process.ts). Metric names:
// docs/operations.md, "Observability".

export type Labels = Record<string, string>;

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  values: Map<string, { labels: Labels; value: number }>;
  /** Histograms: per label set, the count in each bucket (not cumulative), the sum and the count. */
  histograms?: Map<string, { labels: Labels; buckets: number[]; sum: number; count: number }>;
  /** Histograms: the buckets' upper bounds, ascending. */
  bounds?: readonly number[];
  /** Computed at scrape time (numbers that mirror some other object's state). */
  collect?: () => number;
}

export class MetricsRegistry {
  readonly #families = new Map<string, Family>();
  readonly #beforeScrape: Array<() => Promise<void>> = [];

  counter(name: string, help: string): Counter {
    return new Counter(this.#family(name, help, "counter"));
  }

  /** A gauge set by its owner (with labels), or read from `collect` at every scrape (without). */
  gauge(name: string, help: string): Gauge;
  gauge(name: string, help: string, collect: () => number): void;
  gauge(name: string, help: string, collect?: () => number): Gauge | void {
    const family = this.#family(name, help, "gauge");
    if (!collect) return new Gauge(family);
    family.collect = collect;
  }

  /** Observations in buckets of upper bounds `bounds` (ascending; +Inf is added). */
  histogram(name: string, help: string, bounds: readonly number[]): Histogram {
    const family = this.#family(name, help, "histogram");
    family.bounds = bounds;
    family.histograms ??= new Map();
    return new Histogram(family);
  }

  /** A counter kept by some other object (a service's own stats), read at every scrape. */
  counterOf(name: string, help: string, collect: () => number): void {
    this.#family(name, help, "counter").collect = collect;
  }

  /**
   * Runs before every `scrape`: for numbers that take a NATS round trip (work-queue depth).
   * A failing step leaves its gauges at their last values; the scrape still answers.
   */
  beforeScrape(step: () => Promise<void>): void {
    this.#beforeScrape.push(step);
  }

  #family(name: string, help: string, type: Family["type"]): Family {
    let family = this.#families.get(name);
    if (!family) {
      family = { name, help, type, values: new Map() };
      this.#families.set(name, family);
    }
    return family;
  }

  /** The exposition text after the `beforeScrape` steps. */
  async scrape(): Promise<string> {
    await Promise.allSettled(this.#beforeScrape.map((step) => step()));
    return this.render();
  }

  /** The exposition text of the numbers as they are. */
  render(): string {
    let out = "";
    for (const f of this.#families.values()) {
      out += `# HELP ${f.name} ${f.help}\n# TYPE ${f.name} ${f.type}\n`;
      if (f.collect) {
        out += `${f.name} ${formatValue(f.collect())}\n`;
        continue;
      }
      for (const { labels, value } of f.values.values()) out += `${f.name}${formatLabels(labels)} ${formatValue(value)}\n`;
      for (const h of f.histograms?.values() ?? []) {
        let cumulative = 0;
        f.bounds!.forEach((bound, i) => {
          cumulative += h.buckets[i]!;
          out += `${f.name}_bucket${formatLabels({ ...h.labels, le: String(bound) })} ${cumulative}\n`;
        });
        out += `${f.name}_bucket${formatLabels({ ...h.labels, le: "+Inf" })} ${h.count}\n`;
        out += `${f.name}_sum${formatLabels(h.labels)} ${formatValue(h.sum)}\n${f.name}_count${formatLabels(h.labels)} ${h.count}\n`;
      }
    }
    return out;
  }
}

export class Histogram {
  readonly #family: Family;
  constructor(family: Family) {
    this.#family = family;
  }

  observe(labels: Labels, value: number): void {
    const key = formatLabels(labels);
    const histograms = this.#family.histograms!;
    let h = histograms.get(key);
    if (!h) {
      h = { labels, buckets: this.#family.bounds!.map(() => 0), sum: 0, count: 0 };
      histograms.set(key, h);
    }
    const i = this.#family.bounds!.findIndex((bound) => value <= bound);
    if (i >= 0) h.buckets[i]!++;
    h.sum += value;
    h.count++;
  }
}

export class Counter {
  readonly #family: Family;
  constructor(family: Family) {
    this.#family = family;
  }

  inc(labels: Labels = {}, by = 1): void {
    const key = formatLabels(labels);
    const entry = this.#family.values.get(key);
    if (entry) entry.value += by;
    else this.#family.values.set(key, { labels, value: by });
  }

  /** Current value for exactly these labels (tests, logs). */
  get(labels: Labels = {}): number {
    return this.#family.values.get(formatLabels(labels))?.value ?? 0;
  }
}

export class Gauge {
  readonly #family: Family;
  constructor(family: Family) {
    this.#family = family;
  }

  set(labels: Labels, value: number): void {
    this.#family.values.set(formatLabels(labels), { labels, value });
  }
}

function formatLabels(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return "";
  return `{${keys.map((k) => `${k}="${escapeLabel(labels[k]!)}"`).join(",")}}`;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}
