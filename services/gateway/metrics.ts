// Prometheus text exposition (format 0.0.4) for `/metrics`, without a client library: a few
// counters and gauges keyed by their label values. One instance per gateway (no global registry),
// so tests can run several gateways in one process and read each one's numbers.

type Labels = Record<string, string>;

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge";
  values: Map<string, { labels: Labels; value: number }>;
  /** Computed at scrape time (gauges that mirror some other object's state). */
  collect?: () => number;
}

export class MetricsRegistry {
  readonly #families = new Map<string, Family>();

  counter(name: string, help: string): Counter {
    return new Counter(this.#family(name, help, "counter"));
  }

  /** A gauge read from `collect` at every scrape. */
  gauge(name: string, help: string, collect: () => number): void {
    this.#family(name, help, "gauge").collect = collect;
  }

  #family(name: string, help: string, type: Family["type"]): Family {
    let family = this.#families.get(name);
    if (!family) {
      family = { name, help, type, values: new Map() };
      this.#families.set(name, family);
    }
    return family;
  }

  /** The exposition text. */
  render(): string {
    let out = "";
    for (const f of this.#families.values()) {
      out += `# HELP ${f.name} ${f.help}\n# TYPE ${f.name} ${f.type}\n`;
      if (f.collect) {
        out += `${f.name} ${formatValue(f.collect())}\n`;
        continue;
      }
      for (const { labels, value } of f.values.values()) out += `${f.name}${formatLabels(labels)} ${formatValue(value)}\n`;
    }
    return out;
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

/** The gateway's own metrics, named for what an operator asks. */
export interface GatewayMetrics {
  registry: MetricsRegistry;
  /** labels: route, method, status */
  requests: Counter;
  /** labels: route — response body bytes written. */
  bytesServed: Counter;
  /** labels: route — request body bytes received. */
  bytesReceived: Counter;
  hotCacheHits: Counter;
  hotCacheMisses: Counter;
  /** labels: kind (nar, narinfo, ls, log, realisation, debuginfo, cache-info), outcome */
  uploads: Counter;
  /** Blocks whose bytes did not hash to their CID: a damaged store (labels: route). */
  integrityErrors: Counter;
  /** Internal errors that a PUT answered with 400 instead of 5xx (labels: route). */
  uploadInternalErrors: Counter;
  /** Downloads of NARs under a name a client uploaded (KV `files`), by compression served. */
  uploadedFileDownloads: Counter;
  /** Connections closed before they were served (labels: reason — connection-limits.ts `RefusalReason`). */
  connectionsRefused: Counter;
  /** Requests refused by auth.ts (labels: reason — auth.ts `RefusalReason`). */
  authRefusals: Counter;
}

export function createGatewayMetrics(hotCache: { bytes: number; entries: number; capacity: number }): GatewayMetrics {
  const registry = new MetricsRegistry();
  const metrics: GatewayMetrics = {
    registry,
    requests: registry.counter("nixcas_gateway_requests_total", "HTTP requests answered, by route, method and status."),
    bytesServed: registry.counter("nixcas_gateway_bytes_served_total", "Response body bytes sent, by route."),
    bytesReceived: registry.counter("nixcas_gateway_bytes_received_total", "Request body bytes received, by route."),
    hotCacheHits: registry.counter("nixcas_gateway_hot_cache_hits_total", "Blocks served from the in-memory hot cache."),
    hotCacheMisses: registry.counter("nixcas_gateway_hot_cache_misses_total", "Blocks read from JetStream because the hot cache did not hold them."),
    uploads: registry.counter("nixcas_gateway_uploads_total", "Uploads (PUT) by kind and outcome."),
    integrityErrors: registry.counter("nixcas_gateway_integrity_errors_total", "Stored blocks that failed verification when read (never served)."),
    uploadInternalErrors: registry.counter(
      "nixcas_gateway_upload_internal_errors_total",
      "Internal errors during uploads, answered with 400 because Nix mishandles 5xx on PUT.",
    ),
    uploadedFileDownloads: registry.counter(
      "nixcas_gateway_uploaded_file_downloads_total",
      "NAR downloads under a file name a client uploaded (its own cached narinfo), by the compression served.",
    ),
    connectionsRefused: registry.counter(
      "nixcas_gateway_connections_refused_total",
      "HTTP connections closed before they were served: over the per-client limit (client-limit), over the total limit (total-limit), headers not complete in time (header-timeout).",
    ),
    authRefusals: registry.counter(
      "nixcas_gateway_auth_refusals_total",
      "Requests refused by authentication, by reason: no credentials where needed (required), not a valid token (invalid), an expired token (expired), a token without the scope (scope), uploads over NIXCAS_UPLOAD_RATE (rate-limited).",
    ),
  };
  // Unlabelled counters are exposed from the start, so a rate() has a first sample of 0.
  metrics.hotCacheHits.inc({}, 0);
  metrics.hotCacheMisses.inc({}, 0);
  registry.gauge("nixcas_gateway_hot_cache_bytes", "Bytes held by the hot cache.", () => hotCache.bytes);
  registry.gauge("nixcas_gateway_hot_cache_entries", "Blocks held by the hot cache.", () => hotCache.entries);
  registry.gauge("nixcas_gateway_hot_cache_capacity_bytes", "Capacity of the hot cache in bytes.", () => hotCache.capacity);
  return metrics;
}
