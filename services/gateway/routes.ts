// The URL table: where every request goes. HEAD runs the GET handler (same status and headers,
// no body); a path that matches no pattern is 404, a method a route lacks is 405. DELETE is an
// admin's (narinfo-delete.ts), not part of the Nix protocol.
// Patterns match the percent-decoded path; names are validated by the handlers, which answer 404
// on GET (a junk name is simply absent) and 400 on PUT.
import { putCacheInfo, serveCacheInfo } from "./cache-info.ts";
import type { Handler } from "./context.ts";
import { putDebugInfo, serveDebugInfo } from "./debuginfo.ts";
import { serveHealth, serveMetrics, serveReady } from "./health.ts";
import { serveIpfs } from "./ipfs.ts";
import { putListing, serveListing } from "./listings.ts";
import { putLog, serveLog } from "./logs.ts";
import { serveNar } from "./nar-route.ts";
import { putNar } from "./nar-upload.ts";
import { deleteNarInfo } from "./narinfo-delete.ts";
import { serveNarInfo } from "./narinfo-route.ts";
import { putNarInfo } from "./narinfo-upload.ts";
import { putRealisation, serveRealisation } from "./realisations.ts";

export interface Route {
  /** For metrics and logs. */
  name: string;
  pattern: RegExp;
  GET?: Handler;
  PUT?: Handler;
  DELETE?: Handler;
}

export const ROUTES: readonly Route[] = [
  { name: "cache-info", pattern: /^\/nix-cache-info$/, GET: serveCacheInfo, PUT: putCacheInfo },
  { name: "narinfo", pattern: /^\/([^/]+)\.narinfo$/, GET: serveNarInfo, PUT: putNarInfo, DELETE: deleteNarInfo },
  { name: "nar", pattern: /^\/nar\/([^/]+)$/, GET: serveNar, PUT: putNar },
  { name: "listing", pattern: /^\/([^/]+)\.ls$/, GET: serveListing, PUT: putListing },
  { name: "log", pattern: /^\/log\/([^/]+)$/, GET: serveLog, PUT: putLog },
  { name: "realisation", pattern: /^\/realisations\/([^/]+)\.doi$/, GET: serveRealisation, PUT: putRealisation },
  { name: "build-trace", pattern: /^\/build-trace-v2\/([^/]+)\/([^/]+)\.doi$/, GET: serveRealisation, PUT: putRealisation },
  { name: "debuginfo", pattern: /^\/debuginfo\/([^/]+)$/, GET: serveDebugInfo, PUT: putDebugInfo },
  { name: "ipfs", pattern: /^\/ipfs\/([^/]+)$/, GET: serveIpfs },
  { name: "metrics", pattern: /^\/metrics$/, GET: serveMetrics },
  { name: "health", pattern: /^\/healthz$/, GET: serveHealth },
  { name: "ready", pattern: /^\/readyz$/, GET: serveReady },
];

export type RouteMatch =
  | { kind: "found"; route: Route; handler: Handler; params: string[]; head: boolean }
  | { kind: "not-found" }
  | { kind: "method-not-allowed"; route: Route; allow: string };

export function matchRoute(method: string, path: string): RouteMatch {
  for (const route of ROUTES) {
    const m = route.pattern.exec(path);
    if (!m) continue;
    const head = method === "HEAD";
    const handler = head || method === "GET" ? route.GET : method === "PUT" ? route.PUT : method === "DELETE" ? route.DELETE : undefined;
    if (!handler) return { kind: "method-not-allowed", route, allow: allowed(route) };
    return { kind: "found", route, handler, params: m.slice(1), head };
  }
  return { kind: "not-found" };
}

function allowed(route: Route): string {
  return [route.GET ? "GET, HEAD" : "", route.PUT ? "PUT" : "", route.DELETE ? "DELETE" : ""].filter(Boolean).join(", ");
}
