// The gateway's metrics, on its own `/metrics` route (health.ts); the registry is shared with the
// other services (shared/metrics.ts).
import { MetricsRegistry, type Counter, type Histogram } from "../../shared/metrics.ts";

export type { Counter };

/** The gateway's own metrics, named for what an operator asks. */
export interface GatewayMetrics {
  registry: MetricsRegistry;
  /** labels: route, method, status */
  requests: Counter;
  /** labels: route, method — seconds from the request's headers to the response's end (or abort). */
  requestSeconds: Histogram;
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

/** `registry`: the process's (a lone gateway serves it on NIXCAS_HEALTH_PORT too). */
export function createGatewayMetrics(hotCache: { bytes: number; entries: number; capacity: number }, registry = new MetricsRegistry()): GatewayMetrics {
  const metrics: GatewayMetrics = {
    registry,
    requests: registry.counter("nixcas_gateway_requests_total", "HTTP requests answered, by route, method and status."),
    requestSeconds: registry.histogram(
      "nixcas_gateway_request_duration_seconds",
      "Time from a request's headers to the end of its response (a NAR: the whole body), by route and method.",
      [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    ),
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
