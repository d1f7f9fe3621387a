// A nats-server of its own with the nixcas topology, for the test files of the shared/nats
// stores: started by the file's `before` hook, stopped by its `after` hook.
import { after, before } from "node:test";
import type { NatsConnection } from "@nats-io/nats-core";
import { connectNats } from "../../shared/nats/connect.ts";
import { ensureTopology, type Topology } from "../../shared/nats/topology.ts";
import { startNatsServer, type NatsServer } from "./nats-server.ts";

export interface TopologyFixture {
  /** Set once `before` has run. */
  readonly server: NatsServer;
  readonly nc: NatsConnection;
  readonly topology: Topology;
}

/**
 * Registers the hooks; `connectionName` names the test's client connection on the server, and
 * `ready` builds what the file needs on the topology. (It is a callback, not a second `before`
 * hook of the file: Node starts top-level hooks without waiting for the previous one to finish.)
 */
export function serverWithTopology(connectionName: string, ready?: (topology: Topology) => void): TopologyFixture {
  const fixture = {} as { server: NatsServer; nc: NatsConnection; topology: Topology };
  before(async () => {
    fixture.server = await startNatsServer();
    fixture.nc = await connectNats({ servers: [fixture.server.url], name: connectionName });
    fixture.topology = await ensureTopology(fixture.nc);
    ready?.(fixture.topology);
  });
  after(async () => {
    await fixture.nc?.close();
    await fixture.server?.stop();
  });
  return fixture;
}
