// Every service by name, in start order: the one list `nixcas up` (cli/all-in-one.ts),
// `nixcas service <name>` / services/<name>/main.ts (shared/nats/service-process.ts) and the test
// helpers start services from, each with the same ServiceDeps.
// Start order: consumers first, producers last, so nothing is accepted before something can
// process it.
import type { StartService } from "../shared/nats/service-process.ts";
import { startChunker } from "./chunker/chunker.ts";
import { startGateway } from "./gateway/gateway.ts";
import { startIndexer } from "./indexer/indexer.ts";
import { startIngester } from "./ingester/ingester.ts";
import { startTierer } from "./tierer/tierer.ts";

export const SERVICES = {
  indexer: startIndexer,
  chunker: startChunker,
  ingester: startIngester,
  // Before the gateway: it receives the gateway's access reports.
  tierer: startTierer,
  gateway: startGateway,
} as const satisfies Record<string, StartService>;

export type ServiceName = keyof typeof SERVICES;

/** The names in start order (stop in the reverse). */
export const SERVICE_NAMES = Object.keys(SERVICES) as ServiceName[];

export function isServiceName(name: string): name is ServiceName {
  return Object.hasOwn(SERVICES, name);
}
