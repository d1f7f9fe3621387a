// Service registration against a real nats-server: JSON replies, precise error replies,
// $SRV discovery, and stats that count the failures of async handlers.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm } from "@nats-io/services";
import { FormatError, IntegrityError, NixcasError } from "../../shared/errors.ts";
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
        name: "tampered",
        subject: "test.tampered",
        handler: async () => {
          throw new IntegrityError("test.mismatch", "bytes hash to something else");
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

test("a NixcasError becomes { error: { code, message, kind } } and the same class on the client", async () => {
  const reply = await nc.request("test.echo", new TextEncoder().encode("{}"));
  assert.deepEqual(JSON.parse(new TextDecoder().decode(reply.data)), { error: { code: "test.no-say", message: "field 'say' is missing", kind: "FormatError" } });
  assert.equal(reply.headers?.get("Nats-Service-Error-Code"), "400");
  assert.equal(reply.headers?.get("Nats-Service-Error"), "field 'say' is missing");
  await assert.rejects(requestService(nc, "test.echo", {}), (err: NixcasError) => err instanceof FormatError && err.code === "test.no-say" && err.message === "field 'say' is missing");
  await assert.rejects(
    requestService(nc, "test.tampered", {}),
    (err: NixcasError) => err instanceof IntegrityError && err.code === "test.mismatch" && err.message === "bytes hash to something else",
  );
});

test("any other error is an 'internal' error reply, never a hang", async () => {
  await assert.rejects(
    requestService(nc, "test.broken", {}),
    (err: NixcasError) => err.constructor === NixcasError && err.code === "internal" && /cannot read properties/.test(err.message),
  );
});

test("an error reply without a kind (a service in another language) is a NixcasError with its code", async (t) => {
  const sub = nc.subscribe("test.foreign", { callback: (_err, msg) => void msg.respond(JSON.stringify({ error: { code: "foreign.refused", message: "no" } })) });
  t.after(() => sub.unsubscribe());
  await assert.rejects(requestService(nc, "test.foreign", {}), (err: NixcasError) => err.constructor === NixcasError && err.code === "foreign.refused" && err.message === "no");
});

test("discoverable with $SRV.PING / INFO, and STATS counts async failures in the endpoint's data", async () => {
  const client = new Svcm(nc).client();
  const pings = [];
  for await (const p of await client.ping("nixcas-test")) pings.push(p);
  assert.equal(pings.length, 1);
  assert.equal(pings[0]!.version, "0.1.0");
  const infos = [];
  for await (const i of await client.info("nixcas-test")) infos.push(i);
  assert.deepEqual(infos[0]!.endpoints.map((e) => e.subject).sort(), ["test.broken", "test.echo", "test.tampered"]);
  const stats = [];
  for await (const s of await client.stats("nixcas-test")) stats.push(s);
  const broken = stats[0]!.endpoints!.find((e) => e.name === "broken")!;
  const data = broken.data as { requests: number; errors: number };
  assert.equal(data.errors, data.requests);
  assert.ok(data.requests >= 1);
  // Each endpoint reports its own counters: echo answered successes too.
  const echo = stats[0]!.endpoints!.find((e) => e.name === "echo")!.data as { requests: number; errors: number };
  assert.ok(echo.errors >= 1 && echo.requests > echo.errors, JSON.stringify(echo));
});

test("a request to a subject nobody serves fails at once with a clear error", async () => {
  await assert.rejects(
    requestService(nc, "test.nobody", {}, { timeoutMs: 10_000, responder: "the test service" }),
    (err: NixcasError) => err.code === "service.unavailable" && err.message.includes("test.nobody") && err.message.includes("is the test service running"),
  );
});
