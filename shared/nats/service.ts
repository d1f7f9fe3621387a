// Request/reply between nixcas processes, both sides. `startMicroservice` registers a service
// with @nats-io/services ($SRV.PING / INFO / STATS discovery) and turns async handlers into JSON
// replies; `requestService` is the one client every caller uses (ingest client, `nixcas push`,
// tests).
//
// The library only sees the synchronous part of a handler: its STATS `num_errors` and
// processing time miss everything our async handlers do (num_errors stays 0), and its public
// API offers no way to add to them. So this wrapper counts requests, errors and processing time
// itself and reports them as each endpoint's `data` in STATS, with the process's readiness
// (`readiness`: shared/nats/readiness.ts) beside them.
//
// Reply format: the handler's result as JSON; on failure `ServiceErrorReply`
// `{ "error": { "code", "message", "kind" } }` — the NixcasError's code ("internal" for anything
// else) and its class, so the client throws the same class (FormatError, IntegrityError or
// NixcasError) — with the standard Nats-Service-Error / Nats-Service-Error-Code headers.
//
// Tracing (shared/telemetry.ts): a request carries the caller's trace context in its headers,
// and each handler runs in a SERVER span named for its subject without the `nixcas.` prefix
// (`nixcas.ingest.nar` → `ingest nar`).
import { RequestError, type MsgHdrs, type NatsConnection } from "@nats-io/nats-core";
import { Svcm, type Service, type ServiceMsg } from "@nats-io/services";
import { errorKindOf, errorOfKind, FormatError, NixcasError, type ErrorKind } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { MetricsRegistry } from "../metrics.ts";
import { inSpan, markFailed, SpanKind, traceHeaders, type Span } from "../telemetry.ts";
import { readinessOf } from "./readiness.ts";

export interface ServiceRequest {
  data: Uint8Array;
  headers?: MsgHdrs;
}

export interface ServiceEndpoint {
  name: string;
  subject: string;
  /** Queue group; default "q" (so replicas share the load). */
  queue?: string;
  /** Returns the reply, JSON-encoded by the wrapper; throws NixcasError for a precise error reply. */
  handler: (request: ServiceRequest) => Promise<unknown>;
}

export interface MicroserviceOptions {
  name: string;
  version: string;
  description: string;
  endpoints: ServiceEndpoint[];
  logger: Logger;
  /** Where requests are counted by endpoint and outcome (`nixcas_service_requests_total`). */
  metrics?: MetricsRegistry;
}

export interface Microservice {
  stop(): Promise<void>;
}

/** What this wrapper measures per endpoint (STATS `data`). */
export interface EndpointCounters {
  requests: number;
  errors: number;
  inFlight: number;
  processingMs: number;
  lastError?: string;
}

/** The body of every error reply. */
export interface ServiceErrorReply {
  error: {
    /** Stable, machine-readable: the NixcasError's code, or "internal" for a bug. */
    code: string;
    /** For people: what was wrong and where. */
    message: string;
    /** The error's class, restored by the client. */
    kind: ErrorKind;
  };
}

const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Server side: a request body as the JSON object every nixcas endpoint takes. Anything else is a
 * FormatError with the endpoint's `code`, its message led by the `subject`.
 */
export function parseRequestObject(data: Uint8Array, subject: string, code: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(strictUtf8.decode(data));
  } catch (err) {
    throw new FormatError(code, `${subject}: the request is not UTF-8 JSON: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new FormatError(code, `${subject}: the request is not a JSON object`);
  return value as Record<string, unknown>;
}

export async function startMicroservice(nc: NatsConnection, options: MicroserviceOptions): Promise<Microservice> {
  // Keyed by subject: the only endpoint field the library's statsHandler is documented to pass.
  const counters = new Map<string, EndpointCounters>();
  for (const ep of options.endpoints) {
    if (counters.has(ep.subject)) throw new RangeError(`${options.name}: two endpoints listen on ${ep.subject}`);
    counters.set(ep.subject, { requests: 0, errors: 0, inFlight: 0, processingMs: 0 });
  }
  const service: Service = await new Svcm(nc).add({
    name: options.name,
    version: options.version,
    description: options.description,
    // The library calls this per endpoint when answering STATS.
    statsHandler: async (endpoint) => {
      const c = counters.get(endpoint.subject);
      return c ? { ...c, readiness: await readinessOf(nc).check() } : null;
    },
  });
  const log = options.logger.child({ service: options.name });
  const requests = options.metrics?.counter(
    "nixcas_service_requests_total",
    "NATS requests answered, by service, endpoint and outcome: ok, or the error's kind (format: a bad request; integrity: bytes that do not match their hash; error: anything else).",
  );
  for (const ep of options.endpoints) {
    const c = counters.get(ep.subject)!;
    requests?.inc({ service: options.name, endpoint: ep.name, outcome: "ok" }, 0);
    const count = requests ? (outcome: string) => requests.inc({ service: options.name, endpoint: ep.name, outcome }) : undefined;
    const spanName = spanNameOf(ep.subject);
    service.addEndpoint(ep.name, {
      subject: ep.subject,
      queue: ep.queue ?? "q",
      handler: (err, msg) => {
        if (err) {
          log.error("endpoint subscription failed", { endpoint: ep.name, error: err });
          return;
        }
        void inSpan(spanName, { kind: SpanKind.SERVER, parent: msg.headers }, (span) => serve(ep, c, msg, log, count, span));
      },
    });
  }
  log.info("service started", { version: options.version, endpoints: options.endpoints.map((e) => e.subject) });
  return {
    async stop() {
      await service.stop();
    },
  };
}

const OUTCOME_OF_KIND: Record<ErrorKind, string> = { FormatError: "format", IntegrityError: "integrity", NixcasError: "error" };

async function serve(ep: ServiceEndpoint, c: EndpointCounters, msg: ServiceMsg, log: Logger, count: ((outcome: string) => void) | undefined, span: Span | undefined): Promise<void> {
  const start = performance.now();
  c.requests++;
  c.inFlight++;
  try {
    const result = await ep.handler({ data: msg.data, headers: msg.headers });
    msg.respond(encoder.encode(JSON.stringify(result ?? null)));
    count?.("ok");
  } catch (err) {
    c.errors++;
    count?.(OUTCOME_OF_KIND[errorKindOf(err)]);
    if (span) markFailed(span, err);
    c.lastError = (err as Error)?.message ?? String(err);
    const known = err instanceof NixcasError;
    if (!known) log.error("endpoint handler failed", { endpoint: ep.name, error: err, stack: (err as Error)?.stack });
    const reply: ServiceErrorReply = {
      error: {
        code: known ? err.code : "internal",
        message: known ? err.message : `internal error in ${ep.name}: ${c.lastError}`,
        kind: errorKindOf(err),
      },
    };
    try {
      msg.respondError(err instanceof FormatError ? 400 : 500, oneLine(reply.error.message), encoder.encode(JSON.stringify(reply)));
    } catch (replyErr) {
      log.error("cannot send error reply", { endpoint: ep.name, error: replyErr });
    }
  } finally {
    c.inFlight--;
    c.processingMs += performance.now() - start;
  }
}

/** `nixcas.ingest.nar` → `ingest nar`: the span of a request names what it does. */
function spanNameOf(subject: string): string {
  return subject.replace(/^nixcas\./, "").replaceAll(".", " ");
}

function oneLine(text: string): string {
  const flat = text.replace(/[\r\n]+/g, " ");
  return flat.length > 1000 ? flat.slice(0, 997) + "..." : flat;
}

export interface RequestOptions {
  /** How long to wait for the reply; default 30 s. */
  timeoutMs?: number;
  headers?: MsgHdrs;
  /**
   * What serves the subject, for the error when nothing does, e.g. "the ingester service":
   * the message then asks whether it is running.
   */
  responder?: string;
}

/**
 * Client side: sends `body` (bytes, or a value sent as JSON) and returns the decoded reply. An
 * error reply is thrown as the class it was thrown as in the service (`kind`), with the remote
 * code and message. When nothing serves the subject, code `service.unavailable`; any other
 * failure to get a reply (timeout, closed connection), `service.request`.
 */
export async function requestService<T>(nc: NatsConnection, subject: string, body: Uint8Array | unknown, options: RequestOptions = {}): Promise<T> {
  const data = body instanceof Uint8Array ? body : encoder.encode(JSON.stringify(body));
  const headers = traceHeaders(options.headers);
  let reply;
  try {
    reply = await nc.request(subject, data, { timeout: options.timeoutMs ?? 30_000, ...(headers ? { headers } : {}) });
  } catch (err) {
    if (err instanceof RequestError && err.isNoResponders()) {
      throw new NixcasError("service.unavailable", `nothing answers on ${subject}: is ${options.responder ?? "the service that serves it"} running on this NATS server?`, { cause: err });
    }
    throw new NixcasError("service.request", `request to ${subject} failed: ${(err as Error).message}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(reply.data));
  } catch (err) {
    throw new NixcasError("service.reply", `reply from ${subject} is not JSON`, { cause: err });
  }
  if (value !== null && typeof value === "object" && "error" in value) {
    const e = (value as { error?: { code?: unknown; message?: unknown; kind?: unknown } }).error;
    if (e && typeof e === "object") {
      // A reply without a kind (a service in another language) is a plain NixcasError.
      throw errorOfKind(
        e.kind,
        typeof e.code === "string" ? e.code : "service.error",
        typeof e.message === "string" ? e.message : `error reply from ${subject}`,
      );
    }
  }
  return value as T;
}
