// OpenTelemetry tracing (docs/operations.md, "Observability"): off unless the standard
// OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) or OTEL_TRACES_EXPORTER variable is set; then
// @opentelemetry/sdk-node exports spans over OTLP, configured by the other OTEL_* variables
// (protocol http/protobuf or http/json, batch delays, service name, propagators).
//
// Every process's composition root calls `startTelemetry` once (shared/nats/service-process.ts,
// cli/all-in-one.ts). The trace context crosses NATS in message headers (W3C `traceparent`,
// https://www.w3.org/TR/trace-context/): requests (shared/nats/service.ts) and work items
// (shared/nats/work-queue.ts and their publishers), so one upload is one trace from the
// gateway's HTTP span through the ingester, chunker and indexer.
//
// When off, nothing is started and `inSpan` calls its function straight away, and
// `traceHeaders` creates no headers: the cost is one boolean test per message.
import { context, propagation, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type TextMapGetter, type TextMapSetter } from "@opentelemetry/api";
import { headers as natsHeaders, type MsgHdrs } from "@nats-io/nats-core";
import { NIXCAS_VERSION } from "./version.ts";

export { SpanKind, type Span };

export interface Telemetry {
  /** Whether spans are recorded and exported. */
  readonly enabled: boolean;
  /** Exports the spans still buffered, then stops; before the process exits. */
  shutdown(): Promise<void>;
}

let enabled = false;
const tracer = trace.getTracer("nixcas", NIXCAS_VERSION);

/** Whether the OTEL_* variables ask for traces. */
export function tracingRequested(env: NodeJS.ProcessEnv = process.env): boolean {
  const set = (name: string) => (env[name] ?? "").trim() !== "";
  if ((env.OTEL_SDK_DISABLED ?? "").trim().toLowerCase() === "true") return false;
  if ((env.OTEL_TRACES_EXPORTER ?? "").trim().toLowerCase() === "none") return false;
  return set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_TRACES_EXPORTER");
}

/**
 * Starts the SDK when the OTEL_* variables of this process ask for traces (the SDK reads them
 * from `process.env`). `serviceName` is the resource's `service.name` unless OTEL_SERVICE_NAME
 * says otherwise. Once per process.
 */
export async function startTelemetry(serviceName: string): Promise<Telemetry> {
  const env = process.env;
  if (!tracingRequested(env) || enabled) return { enabled, shutdown: async () => {} };
  // Loaded only when wanted: the SDK and its exporters are a large module graph.
  const { NodeSDK } = await import("@opentelemetry/sdk-node");
  const sdk = new NodeSDK({
    ...((env.OTEL_SERVICE_NAME ?? "").trim() === "" ? { serviceName } : {}),
    // Our spans only: no automatic instrumentation of http, dns, net…
    instrumentations: [],
    // Metrics are Prometheus on /metrics (docs/operations.md); traces only here.
    metricReaders: [],
  });
  sdk.start();
  enabled = true;
  return {
    enabled: true,
    shutdown: async () => {
      enabled = false;
      await sdk.shutdown();
    },
  };
}

const natsSetter: TextMapSetter<MsgHdrs> = { set: (carrier, key, value) => carrier.set(key, value) };
const natsGetter: TextMapGetter<MsgHdrs> = {
  get: (carrier, key) => carrier.get(key) || undefined,
  keys: (carrier) => carrier.keys(),
};

/**
 * The headers of an outgoing NATS message: `base` (or new headers) with the trace context of
 * the current span. Without a recording span, `base` as it is (no headers are created).
 */
export function traceHeaders(base?: MsgHdrs): MsgHdrs | undefined {
  if (!enabled || !trace.getActiveSpan()?.isRecording()) return base;
  const h = base ?? natsHeaders();
  propagation.inject(context.active(), h, natsSetter);
  return h;
}

/** The context an incoming NATS message was sent in (its `traceparent`), or the current one. */
function contextOf(headers: MsgHdrs | undefined): Context {
  return headers ? propagation.extract(context.active(), headers, natsGetter) : context.active();
}

export interface SpanOptions {
  kind?: SpanKind;
  /** The incoming NATS message's headers: the span continues the sender's trace. */
  parent?: MsgHdrs;
  attributes?: Attributes;
}

/**
 * Runs `fn` in a span named `name`, the current span while it runs; a throw marks the span as
 * failed (with the error) and is rethrown. When tracing is off, just `fn(undefined)`.
 */
export async function inSpan<T>(name: string, options: SpanOptions, fn: (span: Span | undefined) => Promise<T>): Promise<T> {
  if (!enabled) return fn(undefined);
  const parent = contextOf(options.parent);
  return tracer.startActiveSpan(name, { kind: options.kind ?? SpanKind.INTERNAL, ...(options.attributes ? { attributes: options.attributes } : {}) }, parent, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      markFailed(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

/** A span whose work failed: status ERROR with the error's message, and the error as an event. */
export function markFailed(span: Span, err: unknown): void {
  span.recordException(err instanceof Error ? err : String(err));
  span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error)?.message ?? String(err) });
}
