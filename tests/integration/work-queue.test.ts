// Work queues against a real nats-server: acks, retries, dead letters, heartbeats, draining on
// stop, and items that survive a worker or server crash. Each test has its own server, so one
// test's consumer state cannot leak into another's.
import { test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { nanos, type NatsConnection } from "@nats-io/nats-core";
import { connectNats } from "../../shared/nats/connect.ts";
import { INGEST_LANES } from "../../shared/nats/subjects.ts";
import { ensureTopology, type Topology } from "../../shared/nats/topology.ts";
import { DEAD_LETTER_HEADERS, runWorkQueue, workBackoffMs, type WorkContext, type WorkQueueOptions } from "../../shared/nats/work-queue.ts";
import { FormatError, PermanentError } from "../../shared/errors.ts";
import { silentLogger } from "../../shared/log.ts";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.ts";

interface Item {
  id: string;
}

const encode = (item: Item) => new TextEncoder().encode(JSON.stringify(item));
const decode = (data: Uint8Array): Item => {
  const v = JSON.parse(new TextDecoder().decode(data)) as unknown;
  if (typeof v !== "object" || v === null || typeof (v as Item).id !== "string") throw new FormatError("test.item", "not an item");
  return v as Item;
};

interface Env {
  server: NatsServer;
  topology: Topology;
  connect(name: string): Promise<Topology>;
  deadLetters: Array<{ item: Item | undefined; reason: string }>;
  options(overrides: Partial<WorkQueueOptions<Item>> & Pick<WorkQueueOptions<Item>, "handle">, topology?: Topology): WorkQueueOptions<Item>;
  /** Runs a worker with `options(overrides)`, stopped when the test ends. */
  start(overrides: Partial<WorkQueueOptions<Item>> & Pick<WorkQueueOptions<Item>, "handle">): Promise<void>;
  publish(item: Item | Uint8Array): Promise<void>;
  pending(): Promise<number>;
}

async function setup(t: { after(fn: () => Promise<void>): void }): Promise<Env> {
  const server = await startNatsServer();
  const connections: NatsConnection[] = [];
  const connect = async (name: string) => {
    const nc = await connectNats({ servers: [server.url], name, reconnectTimeWaitMs: 100 });
    connections.push(nc);
    return ensureTopology(nc);
  };
  t.after(async () => {
    for (const nc of connections) if (!nc.isClosed()) await nc.close();
    await server.stop();
  });
  const topology = await connect("work-queue-test");
  const deadLetters: Env["deadLetters"] = [];
  const env: Env = {
    server,
    topology,
    connect,
    deadLetters,
    start: async (overrides) => {
      const queue = await runWorkQueue(env.options(overrides));
      t.after(() => queue.stop());
    },
    options: (overrides, topo = topology) => ({
      topology: topo,
      stream: "INGEST",
      consumer: INGEST_LANES.small.consumer,
      filterSubject: INGEST_LANES.small.subject,
      concurrency: 2,
      ackWaitMs: 2000,
      maxDeliver: 3,
      decode,
      onDeadLetter: async (item, reason) => {
        deadLetters.push({ item, reason });
      },
      logger: silentLogger,
      retryDelayMs: () => 100,
      fetchExpiresMs: 1000,
      ...overrides,
    }),
    publish: async (item) => {
      await topology.js.publish(INGEST_LANES.small.subject, item instanceof Uint8Array ? item : encode(item));
    },
    pending: async () => (await topology.jsm.streams.info("INGEST")).state.messages,
  };
  return env;
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await sleep(50);
  }
}

async function deadLetterMessages(topology: Topology) {
  const info = await topology.jsm.streams.info("DEADLETTER");
  const out = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await topology.jsm.streams.getMessage("DEADLETTER", { seq });
    if (m) out.push(m);
  }
  return out;
}

test("items are handled once each, acked, and leave the work queue", async (t) => {
  const env = await setup(t);
  const seen: string[] = [];
  await env.start({ handle: async (item) => void seen.push(item.id) });
  for (const id of ["a", "b", "c", "d", "e"]) await env.publish({ id });
  await until("all handled", () => seen.length === 5);
  await until("queue empty", async () => (await env.pending()) === 0);
  assert.deepEqual([...seen].sort(), ["a", "b", "c", "d", "e"]);
  await sleep(300);
  assert.equal(seen.length, 5, "no item handled twice");
  assert.equal(env.deadLetters.length, 0);
});

test("a PermanentError dead-letters the item at once, with the reason, and removes it", async (t) => {
  const env = await setup(t);
  let calls = 0;
  await env.start({
    handle: async () => {
      calls++;
      throw new PermanentError("nar.bad", "NAR hash mismatch: expected sha256:aaa, got sha256:bbb");
    },
  });
  await env.publish({ id: "bad" });
  await until("dead-lettered", () => env.deadLetters.length === 1);
  await until("queue empty", async () => (await env.pending()) === 0);
  assert.equal(calls, 1);
  assert.deepEqual(env.deadLetters[0]!.item, { id: "bad" });
  assert.match(env.deadLetters[0]!.reason, /NAR hash mismatch/);
  const [dl, ...more] = await deadLetterMessages(env.topology);
  assert.equal(more.length, 0);
  assert.equal(dl!.subject, "nixcas.deadletter.INGEST");
  assert.equal(dl!.header.get(DEAD_LETTER_HEADERS.reason), "NAR hash mismatch: expected sha256:aaa, got sha256:bbb");
  assert.equal(dl!.header.get(DEAD_LETTER_HEADERS.stream), "INGEST");
  assert.equal(dl!.header.get(DEAD_LETTER_HEADERS.deliveries), "1");
  assert.deepEqual(decode(dl!.data), { id: "bad" });
});

test("an undecodable item is dead-lettered without calling the handler", async (t) => {
  const env = await setup(t);
  let calls = 0;
  await env.start({ handle: async () => void calls++ });
  await env.publish(new TextEncoder().encode("{not json"));
  await until("dead-lettered", () => env.deadLetters.length === 1);
  assert.equal(calls, 0);
  assert.equal(env.deadLetters[0]!.item, undefined);
  assert.match(env.deadLetters[0]!.reason, /undecodable work item/);
  const [dl] = await deadLetterMessages(env.topology);
  assert.equal(new TextDecoder().decode(dl!.data), "{not json");
  await until("queue empty", async () => (await env.pending()) === 0);
});

test("a transient failure is retried and succeeds on the second delivery", async (t) => {
  const env = await setup(t);
  const deliveries: number[] = [];
  let done = false;
  await env.start({
    handle: async (_item, ctx) => {
      deliveries.push(ctx.deliveryCount);
      if (ctx.deliveryCount === 1) throw new Error("S3 timeout");
      done = true;
    },
  });
  await env.publish({ id: "flaky" });
  await until("succeeded", () => done);
  await until("queue empty", async () => (await env.pending()) === 0);
  assert.deepEqual(deliveries, [1, 2]);
  assert.equal(env.deadLetters.length, 0);
});

test("an item that always fails transiently is dead-lettered after max_deliver", async (t) => {
  const env = await setup(t);
  const deliveries: number[] = [];
  await env.start({
    maxDeliver: 3,
    handle: async (_item, ctx) => {
      deliveries.push(ctx.deliveryCount);
      throw new Error("connection refused");
    },
  });
  await env.publish({ id: "doomed" });
  await until("dead-lettered", () => env.deadLetters.length === 1);
  await until("queue empty", async () => (await env.pending()) === 0);
  assert.deepEqual(deliveries, [1, 2, 3]);
  assert.match(env.deadLetters[0]!.reason, /failed 3 times \(max_deliver 3\); last error: connection refused/);
  const [dl] = await deadLetterMessages(env.topology);
  assert.equal(dl!.header.get(DEAD_LETTER_HEADERS.deliveries), "3");
});

test("a handler that runs longer than ack_wait but heartbeats is not redelivered", async (t) => {
  const env = await setup(t);
  const calls: WorkContext[] = [];
  let finished = false;
  await env.start({
    ackWaitMs: 2000,
    concurrency: 2, // a second slot is free to receive a redelivery, if there were one
    handle: async (_item, ctx) => {
      calls.push(ctx);
      await sleep(5500); // 2.75 × ack_wait
      finished = true;
    },
  });
  await env.publish({ id: "long" });
  await until("finished", () => finished, 15_000);
  await until("queue empty", async () => (await env.pending()) === 0);
  assert.equal(calls.length, 1);
  assert.equal(calls[0]!.deliveryCount, 1);
});

test("stop() stops fetching and waits for the items in flight, which are acked", async (t) => {
  const env = await setup(t);
  let started = 0;
  let finished = 0;
  const queue = await runWorkQueue(
    env.options({
      concurrency: 2,
      handle: async () => {
        started++;
        await sleep(1500);
        finished++;
      },
    }),
  );
  for (const id of ["1", "2", "3", "4"]) await env.publish({ id });
  await until("two in flight", () => started === 2);
  await queue.stop();
  assert.equal(finished, started, "stop() returned only after the in-flight items finished");
  assert.equal(started, 2, "no new item was started after stop()");
  assert.equal(await env.pending(), 2, "the two finished items were acked; the others wait in the queue");
  // The rest is picked up by the next worker.
  let handled = 0;
  const next = await runWorkQueue(env.options({ handle: async () => void handled++ }));
  t.after(() => next.stop());
  await until("rest handled", () => handled === 2);
  await until("queue empty", async () => (await env.pending()) === 0);
});

test("a worker that dies without acking: the item is redelivered to another worker", async (t) => {
  const env = await setup(t);
  const crashing = await env.connect("crashing-worker");
  let gotIt = false;
  const doomed = await runWorkQueue(
    env.options(
      {
        concurrency: 1,
        ackWaitMs: 1500,
        handle: async () => {
          gotIt = true;
          await new Promise(() => {}); // hangs, like a process that died mid-item
        },
      },
      crashing,
    ),
  );
  void doomed; // never stopped: its connection is cut instead
  await env.publish({ id: "survivor" });
  await until("first worker took it", () => gotIt);
  await crashing.nc.close(); // the process is gone: no ack, no heartbeats
  const deliveries: number[] = [];
  const healthy = await runWorkQueue(env.options({ concurrency: 1, ackWaitMs: 1500, handle: async (_i, ctx) => void deliveries.push(ctx.deliveryCount) }));
  t.after(() => healthy.stop());
  await until("redelivered and handled", () => deliveries.length === 1, 15_000);
  assert.equal(deliveries[0], 2);
  await until("queue empty", async () => (await env.pending()) === 0);
  assert.equal(env.deadLetters.length, 0);
});

test("a worker that dies on the last delivery: the max-deliveries advisory dead-letters the item", async (t) => {
  const env = await setup(t);
  const crashing = await env.connect("crashing-worker");
  let gotIt = false;
  await runWorkQueue(
    env.options(
      {
        concurrency: 1,
        ackWaitMs: 1000,
        maxDeliver: 1,
        handle: async () => {
          gotIt = true;
          await new Promise(() => {});
        },
      },
      crashing,
    ),
  );
  await env.publish({ id: "orphan" });
  await until("first worker took it", () => gotIt);
  await crashing.nc.close();
  let handledAgain = false;
  const healthy = await runWorkQueue(
    env.options({
      concurrency: 1,
      ackWaitMs: 1000,
      maxDeliver: 1,
      handle: async () => {
        handledAgain = true;
      },
    }),
  );
  t.after(() => healthy.stop());
  await until("dead-lettered by the reaper", () => env.deadLetters.length === 1, 20_000);
  assert.deepEqual(env.deadLetters[0]!.item, { id: "orphan" });
  assert.match(env.deadLetters[0]!.reason, /crashed or stalled on the last delivery/);
  await until("queue empty", async () => (await env.pending()) === 0);
  const dls = await deadLetterMessages(env.topology);
  assert.equal(dls.length, 1);
  assert.equal(handledAgain, false, "a max-delivered item is not handled again");
});

test("a server crash mid-item: the item is still handled and acked after the restart", async (t) => {
  const env = await setup(t);
  const calls: number[] = [];
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  await env.start({
    concurrency: 1,
    ackWaitMs: 2000,
    handle: async (_item, ctx) => {
      calls.push(ctx.deliveryCount);
      if (calls.length === 1) await released;
    },
  });
  await env.publish({ id: "through-a-crash" });
  await until("in flight", () => calls.length === 1);
  await env.server.kill("SIGKILL");
  await env.server.restart();
  release();
  await until("handled and acked after the restart", async () => {
    try {
      return (await env.pending()) === 0;
    } catch {
      return false; // still reconnecting
    }
  }, 30_000);
  assert.ok(calls.length >= 1);
  assert.equal(env.deadLetters.length, 0);
});

test("the durable consumer is created with, and later follows, the configured ack_wait / max_deliver / backoff", async (t) => {
  const env = await setup(t);
  const first = await runWorkQueue(env.options({ ackWaitMs: 2000, maxDeliver: 3, handle: async () => {} }));
  await first.stop();
  let c = (await env.topology.jsm.consumers.info("INGEST", INGEST_LANES.small.consumer)).config;
  assert.equal(c.ack_policy, "explicit");
  assert.equal(c.filter_subject, INGEST_LANES.small.subject);
  assert.equal(c.ack_wait, nanos(2000));
  assert.equal(c.max_deliver, 3);
  assert.deepEqual(c.backoff, [nanos(2000), nanos(4000)]);
  const second = await runWorkQueue(env.options({ ackWaitMs: 3000, maxDeliver: 5, handle: async () => {} }));
  t.after(() => second.stop());
  c = (await env.topology.jsm.consumers.info("INGEST", INGEST_LANES.small.consumer)).config;
  assert.equal(c.ack_wait, nanos(3000));
  assert.equal(c.max_deliver, 5);
  assert.deepEqual(c.backoff, workBackoffMs(3000, 5).map((ms) => nanos(ms)));
  assert.deepEqual(workBackoffMs(60_000, 5), [60_000, 120_000, 240_000, 480_000]);
  assert.deepEqual(workBackoffMs(60_000, 1), []);
});
