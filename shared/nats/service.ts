// Registers a service with @nats-io/services ($SRV.PING / INFO / STATS discovery) and turns
// async handlers into JSON request/reply. The library only sees the synchronous part of a
// handler: it neither counts errors of an async handler nor times it, so this wrapper counts
// requests, errors and processing time itself, reports them as the endpoint's `data` in STATS,
// and bumps the library's own `num_errors` so that field is true as well.
//
// Reply format: the handler's result as JSON; on failure `{ "error": { "code", "message" } }`
// (the NixcasError's code, "internal" for anything else) with the standard
// Nats-Service-Error / Nats-Service-Error-Code headers. `requestService` is the client side.
import { headers as natsHeaders, type MsgHdrs, type NatsConnection } from "@nats-io/nats-core";
import { Svcm, ServiceErrorCodeHeader, ServiceErrorHeader, type Service, type ServiceMsg } from "@nats-io/services";
import { FormatError, NixcasError } from "../errors.ts";
import type { Logger } from "../log.ts";

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

const encoder = new TextEncoder();

export async function startMicroservice(nc: NatsConnection, options: MicroserviceOptions): Promise<Microservice> {
  const counters = new Map<string, EndpointCounters>();
  const service: Service = await new Svcm(nc).add({
    name: options.name,
    version: options.version,
    description: options.description,
    // The library calls this per endpoint when answering STATS.
    statsHandler: async (endpoint) => counters.get((endpoint as { name?: string }).name ?? "") ?? null,
  });
  const log = options.logger.child({ service: options.name });
  for (const ep of options.endpoints) {
    const c: EndpointCounters = { requests: 0, errors: 0, inFlight: 0, processingMs: 0 };
    counters.set(ep.name, c);
    service.addEndpoint(ep.name, {
      subject: ep.subject,
      queue: ep.queue ?? "q",
      handler: (err, msg) => {
        if (err) {
          log.error("endpoint subscription failed", { endpoint: ep.name, error: err });
          return;
        }
        void serve(service, ep, c, msg, log);
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

async function serve(service: Service, ep: ServiceEndpoint, c: EndpointCounters, msg: ServiceMsg, log: Logger): Promise<void> {
  const start = performance.now();
  c.requests++;
  c.inFlight++;
  try {
    const result = await ep.handler({ data: msg.data, headers: msg.headers });
    msg.respond(encoder.encode(JSON.stringify(result ?? null)));
  } catch (err) {
    c.errors++;
    c.lastError = (err as Error)?.message ?? String(err);
    countLibraryError(service, ep.name, err);
    const known = err instanceof NixcasError;
    if (!known) log.error("endpoint handler failed", { endpoint: ep.name, error: err, stack: (err as Error)?.stack });
    const code = known ? err.code : "internal";
    const message = known ? err.message : `internal error in ${ep.name}: ${c.lastError}`;
    const h = natsHeaders();
    h.set(ServiceErrorHeader, oneLine(message));
    h.set(ServiceErrorCodeHeader, err instanceof FormatError ? "400" : "500");
    try {
      msg.respond(encoder.encode(JSON.stringify({ error: { code, message } })), { headers: h });
    } catch (replyErr) {
      log.error("cannot send error reply", { endpoint: ep.name, error: replyErr });
    }
  } finally {
    c.inFlight--;
    c.processingMs += performance.now() - start;
  }
}

/** Makes the library's STATS `num_errors` count async failures (it only sees sync throws). */
function countLibraryError(service: Service, endpoint: string, err: unknown): void {
  const handlers = (service as unknown as { handlers?: Array<{ name?: string; stats?: { countError?: (e: Error) => void } }> }).handlers;
  const h = handlers?.find((x) => x.name === endpoint);
  h?.stats?.countError?.(err instanceof Error ? err : new Error(String(err)));
}

function oneLine(text: string): string {
  const flat = text.replace(/[\r\n]+/g, " ");
  return flat.length > 1000 ? flat.slice(0, 997) + "..." : flat;
}

/**
 * Client side: sends `body` (bytes, or a value sent as JSON) and returns the decoded reply; an
 * `{ error }` reply becomes a NixcasError with the remote code and message.
 */
export async function requestService<T>(nc: NatsConnection, subject: string, body: Uint8Array | unknown, options: { timeoutMs?: number; headers?: MsgHdrs } = {}): Promise<T> {
  const data = body instanceof Uint8Array ? body : encoder.encode(JSON.stringify(body));
  let reply;
  try {
    reply = await nc.request(subject, data, { timeout: options.timeoutMs ?? 30_000, ...(options.headers ? { headers: options.headers } : {}) });
  } catch (err) {
    throw new NixcasError("service.request", `request to ${subject} failed: ${(err as Error).message}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(reply.data));
  } catch (err) {
    throw new NixcasError("service.reply", `reply from ${subject} is not JSON`, { cause: err });
  }
  if (value !== null && typeof value === "object" && "error" in value) {
    const e = (value as { error?: { code?: unknown; message?: unknown } }).error;
    if (e && typeof e === "object") {
      throw new NixcasError(typeof e.code === "string" ? e.code : "service.error", typeof e.message === "string" ? e.message : `error reply from ${subject}`);
    }
  }
  return value as T;
}
