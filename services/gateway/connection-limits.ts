// Connection hygiene of the gateway's HTTP server: how many connections it holds, per client and
// in all, and how long a connection may sit without a complete request. Without it, a few
// thousand connections that send their headers slowly (slow-loris) fill the server and every
// other client is refused for as long as they hold on.
//
// - Per client address (NIXCAS_HTTP_MAX_CONNECTIONS_PER_CLIENT): a connection over the limit is
//   destroyed as soon as it is accepted, so one client cannot take the slots of the others.
//   IPv6 clients are counted per /64, the block one host is normally given.
// - In all (NIXCAS_HTTP_MAX_CONNECTIONS): node:http's own `maxConnections` (it closes the new
//   connection and emits `drop`).
// - Headers (NIXCAS_HTTP_HEADER_TIMEOUT_SECONDS): node:http's `headersTimeout` counts from the
//   first byte of a request, and is enforced only when its connection check runs
//   (`connectionsCheckingInterval`, 30 s by default: a 10 s limit then really means up to 40 s),
//   so the check runs here at least every second. A connection that sends no byte at all is not
//   seen by that check; it is closed when it has sent nothing for as long after its accept. A
//   kept-alive connection may be idle as long between requests (`keepAliveTimeout`).
// The process also needs a file descriptor per connection: docs/runtime-notes.md.
import type { IncomingMessage, Server } from "node:http";
import type { Socket } from "node:net";
import type { GatewayMetrics } from "./metrics.ts";

export interface HttpLimits {
  maxConnections: number;
  /** 0: no per-client limit (behind a proxy, where every client has the proxy's address). */
  maxConnectionsPerClient: number;
  headerTimeoutSeconds: number;
}

/** Why a connection was closed before it was served (the `reason` of the refusal counter). */
export type RefusalReason = "client-limit" | "total-limit" | "header-timeout";

/** The createServer options that follow from the limits. */
export function serverTimeouts(limits: HttpLimits): { requestTimeout: number; headersTimeout: number; keepAliveTimeout: number; connectionsCheckingInterval: number } {
  const headersTimeout = limits.headerTimeoutSeconds * 1000;
  return {
    // No total request time: a NAR upload of tens of GiB takes what it takes; idle bodies and
    // stalled readers are cut by request-body.ts and manifest-stream.ts instead.
    requestTimeout: 0,
    headersTimeout,
    keepAliveTimeout: headersTimeout,
    // A slow-header connection is cut within headersTimeout + this.
    connectionsCheckingInterval: Math.min(1000, headersTimeout / 4),
  };
}

/** Applies the connection limits to `server` (created with `serverTimeouts`); returns the open count. */
export function limitConnections(server: Server, limits: HttpLimits, metrics: GatewayMetrics): { readonly open: number } {
  const perClient = new Map<string, number>();
  /** Connections that have not yet sent a complete first request: their deadline. */
  const firstRequestTimers = new WeakMap<Socket, NodeJS.Timeout>();
  let open = 0;
  const headerTimeoutMs = limits.headerTimeoutSeconds * 1000;

  server.maxConnections = limits.maxConnections;
  server.on("drop", () => metrics.connectionsRefused.inc({ reason: "total-limit" satisfies RefusalReason }));

  server.on("connection", (socket: Socket) => {
    const key = clientKey(socket.remoteAddress);
    const held = perClient.get(key) ?? 0;
    if (limits.maxConnectionsPerClient > 0 && held >= limits.maxConnectionsPerClient) {
      metrics.connectionsRefused.inc({ reason: "client-limit" satisfies RefusalReason });
      socket.destroy();
      return;
    }
    perClient.set(key, held + 1);
    open++;
    const timer = setTimeout(() => {
      // A request begun is node:http's to time out (from its first byte, with a 408).
      if (socket.bytesRead > 0) return;
      metrics.connectionsRefused.inc({ reason: "header-timeout" satisfies RefusalReason });
      socket.destroy();
    }, headerTimeoutMs);
    timer.unref();
    firstRequestTimers.set(socket, timer);
    socket.once("close", () => {
      clearTimeout(timer);
      open--;
      const left = (perClient.get(key) ?? 1) - 1;
      if (left > 0) perClient.set(key, left);
      else perClient.delete(key);
    });
  });

  // From the first complete request on, node:http's headersTimeout and keepAliveTimeout apply.
  const firstRequestArrived = (req: IncomingMessage) => {
    const timer = firstRequestTimers.get(req.socket);
    if (timer === undefined) return;
    clearTimeout(timer);
    firstRequestTimers.delete(req.socket);
  };
  server.on("request", firstRequestArrived);
  server.on("checkContinue", firstRequestArrived);

  // node:http's own header timeout answers 408 through `clientError` (gateway.ts).
  server.on("clientError", (err: NodeJS.ErrnoException) => {
    if (err.code === "ERR_HTTP_REQUEST_TIMEOUT" || err.code === "ERR_HTTP_HEADERS_TIMEOUT") metrics.connectionsRefused.inc({ reason: "header-timeout" satisfies RefusalReason });
  });

  metrics.registry.gauge("nixcas_gateway_open_connections", "HTTP connections open now (not counting those refused at once).", () => open);
  return {
    get open() {
      return open;
    },
  };
}

/**
 * The address a per-client limit counts: IPv4 as it is (also when IPv4-mapped), IPv6 by its /64
 * prefix, since one host usually holds a whole /64 and could otherwise open each connection
 * from another address.
 */
export function clientKey(address: string | undefined): string {
  if (address === undefined) return "unknown";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!address.includes(":")) return address;
  const bare = address.replace(/%.*$/, "");
  const halves = bare.split("::");
  const groups = (part: string | undefined) => (part ? part.split(":").flatMap((g) => (g.includes(".") ? ["0", "0"] : [g])) : []);
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  const full = halves.length === 2 ? [...head, ...Array<string>(Math.max(0, 8 - head.length - tail.length)).fill("0"), ...tail] : head;
  return `${full.slice(0, 4).map((g) => (parseInt(g, 16) || 0).toString(16)).join(":")}::/64`;
}
