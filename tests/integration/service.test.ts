// Service registration against a real nats-server: JSON replies, precise error replies,
// $SRV discovery, and stats that count the failures of async handlers.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm } from "@nats-io/services";
import { FormatError, NixcasError } from "../../shared/errors.ts";
import { silentLogger } from "../../shared/log.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { requestService, startMicroservice, type Microservice } from "../../shared/nats/service.ts";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.ts";

let server: NatsServer;
let nc: NatsConnection;
let service: Microservice;

before(async () => {
  server = await startNatsServer({ jetstream: false });
  nc = await connectNats({ servers: [server.url], name: "service-test" });
  service = await startMicroservice(nc, {
    name: "nixcas-test",
    version: "0.1.0",
    description: "test service",
    logger: silentLogger,
    endpoints: [
      {
        name: "echo",
        subject: "test.echo",
        handler: async ({ data }) => {
          await new Promise((r) => setTimeout(r, 5));
          const v = JSON.parse(new TextDecoder().decode(data)) as { say?: string };
          if (typeof v.say !== "string") throw new FormatError("test.no-say", "field 'say' is missing");
          return { said: v.say };
        },
      },
      {
        name: "broken",
        subject: "test.broken",
        handler: async () => {
          throw new TypeError("cannot read properties of undefined");
        },
      },
    ],
  });
});

after(async () => {
  await service?.stop();
  await nc?.close();
  await server?.stop();
});

test("a handler's result comes back as JSON", async () => {
  assert.deepEqual(await requestService(nc, "test.echo", { say: "hi" }), { said: "hi" });
});

test("a NixcasError becomes { error: { code, message } } and a NixcasError on the client", async () => {
  const reply = await nc.request("test.echo", new TextEncoder().encode("{}"));
  assert.deepEqual(JSON.parse(new TextDecoder().decode(reply.data)), { error: { code: "test.no-say", message: "field 'say' is missing" } });
  assert.equal(reply.headers?.get("Nats-Service-Error-Code"), "400");
  await assert.rejects(requestService(nc, "test.echo", {}), (err: NixcasError) => err.code === "test.no-say" && err.message === "field 'say' is missing");
});

test("any other error is an 'internal' error reply, never a hang", async () => {
  await assert.rejects(requestService(nc, "test.broken", {}), (err: NixcasError) => err.code === "internal" && /cannot read properties/.test(err.message));
});

test("discoverable with $SRV.PING / INFO, and STATS counts async failures", async () => {
  const client = new Svcm(nc).client();
  const pings = [];
  for await (const p of await client.ping("nixcas-test")) pings.push(p);
  assert.equal(pings.length, 1);
  assert.equal(pings[0]!.version, "0.1.0");
  const infos = [];
  for await (const i of await client.info("nixcas-test")) infos.push(i);
  assert.deepEqual(infos[0]!.endpoints.map((e) => e.subject).sort(), ["test.broken", "test.echo"]);
  const stats = [];
  for await (const s of await client.stats("nixcas-test")) stats.push(s);
  const broken = stats[0]!.endpoints!.find((e) => e.name === "broken")!;
  assert.ok(broken.num_errors >= 1, "the library's own counter includes async failures");
  const data = broken.data as { requests: number; errors: number };
  assert.equal(data.errors, data.requests);
  assert.ok(data.requests >= 1);
});

test("a request to a subject nobody serves fails with a clear error", async () => {
  await assert.rejects(requestService(nc, "test.nobody", {}, { timeoutMs: 1000 }), (err: NixcasError) => err.code === "service.request" && err.message.includes("test.nobody"));
});
