// Work-queue workers (INGEST, INDEX): a durable pull consumer with explicit ack, worked by
// `concurrency` slots that each pull one item at a time, so a process never holds an item it
// is not working on (a buffered item would burn its ack_wait unheard).
//
// The life of an item:
//   - `decode` fails → it can never succeed: dead-letter at once.
//   - `handle` runs with in-progress heartbeats (`working()`) every ack_wait/3, so a long NAR
//     is not redelivered to another worker mid-way.
//   - `handle` resolves → ack, confirmed by the server (ackAck): the handler made its outputs
//     durable before resolving, so the item is only gone once they are.
//   - `handle` throws PermanentError → dead-letter now; any other error → `nak` with a growing
//     delay, or dead-letter if this was the last allowed delivery.
//   - the worker dies (crash, kill) → the server redelivers after ack_wait (then per `backoff`).
//     If it died on the last delivery, the server gives up and emits a MAX_DELIVERIES advisory
//     (captured by the ADVISORIES stream): a reaper consumer dead-letters that item too, so no
//     item is left stuck in a work queue unaccounted for.
// Dead-lettering = JetStream publish (with ack) of the original body to
// `nixcas.deadletter.<stream>` with the reason in headers, then `onDeadLetter` (status `failed`,
// events), then `term()` (which removes it from the work queue). `term()` is sent without a
// reason: below server 2.10.4 `term(reason)` is not a term.
//
// Tracing (shared/telemetry.ts): `handle` runs in a CONSUMER span (`spanName`) that continues
// the trace of whoever published the item (its `traceparent` header, set with `traceHeaders`).
import { headers as natsHeaders, nanos, type NatsConnection } from "@nats-io/nats-core";
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, type ConsumerConfig, type ConsumerInfo, type ConsumerMessages, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { NixcasError, PermanentError } from "../errors.ts";
import { isJetStreamApiError, MoreJetStreamApiCodes } from "./jetstream-codes.ts";
import { isLeaderChange, LEADER_CHANGE_BUDGET_MS } from "./failover.ts";
import type { Logger } from "../log.ts";
import { inSpan, SpanKind } from "../telemetry.ts";
import { SUBJECTS, type WorkStream } from "./subjects.ts";
import type { WorkQueueMetrics } from "./work-queue-metrics.ts";
import { STREAMS, type Topology } from "./topology.ts";

export const DEAD_LETTER_HEADERS = {
  reason: "Nixcas-Reason",
  stream: "Nixcas-Stream",
  deliveries: "Nixcas-Deliveries",
  consumer: "Nixcas-Consumer",
  streamSeq: "Nixcas-Stream-Seq",
  subject: "Nixcas-Subject",
} as const;

export interface WorkContext {
  /** 1 on the first delivery. */
  deliveryCount: number;
  /** Tells the server the item is still being worked on (also sent every ack_wait/3). */
  heartbeat(): void;
  /** Aborted when the NATS connection closes: the item cannot be acked any more. */
  signal: AbortSignal;
}

export interface WorkQueueOptions<T> {
  topology: Topology;
  stream: WorkStream;
  consumer: string;
  /** The consumer takes only this subject of the stream (a lane of INGEST); default: all of them. */
  filterSubject?: string;
  concurrency: number;
  ackWaitMs: number;
  maxDeliver: number;
  /** Throws (FormatError) on an item that can never be handled: it is dead-lettered. */
  decode: (data: Uint8Array) => T;
  handle: (item: T, ctx: WorkContext) => Promise<void>;
  /** After the dead-letter copy is durable, before the term (record `failed`, emit events). */
  onDeadLetter: (item: T | undefined, reason: string, raw: Uint8Array) => Promise<void>;
  logger: Logger;
  /** Delay before a failed item is redelivered; default 1 s doubling up to 60 s. */
  retryDelayMs?: (deliveryCount: number) => number;
  /** How long one pull waits for an item (≥ 1000); `stop()` can take this long. Default 5 s. */
  fetchExpiresMs?: number;
  /** The name of the span `handle` runs in, for the domain (`chunk nar`); default `work <stream>`. */
  spanName?: string;
  /** Counts how the items ended (work-queue-metrics.ts). */
  metrics?: WorkQueueMetrics;
}

export interface WorkQueue {
  /** Stops fetching, waits for the items in flight to finish (and be acked). */
  stop(): Promise<void>;
}

export async function runWorkQueue<T>(options: WorkQueueOptions<T>): Promise<WorkQueue> {
  if (!Number.isInteger(options.concurrency) || options.concurrency < 1) throw new RangeError(`concurrency must be >= 1, got ${options.concurrency}`);
  if (!(options.ackWaitMs >= 1000)) throw new RangeError(`ackWaitMs must be >= 1000, got ${options.ackWaitMs}`);
  if (!Number.isInteger(options.maxDeliver) || options.maxDeliver < 1) throw new RangeError(`maxDeliver must be >= 1, got ${options.maxDeliver}`);
  await ensureWorkConsumer(options.topology.jsm, options.stream, options.consumer, consumerSettings(options));
  const runner = new WorkQueueRunner(options);
  runner.start();
  return { stop: () => runner.stop() };
}

/** Redelivery schedule after a worker vanished: ack_wait, then doubling, capped at 10 min. */
export function workBackoffMs(ackWaitMs: number, maxDeliver: number): number[] {
  // The server uses backoff[0] as ack_wait, and needs fewer values than max_deliver.
  const cap = Math.max(ackWaitMs, 10 * 60_000);
  return Array.from({ length: Math.max(0, maxDeliver - 1) }, (_, i) => Math.min(ackWaitMs * 2 ** i, cap));
}

export interface WorkConsumerSettings {
  ackWaitMs: number;
  maxDeliver: number;
  filterSubject?: string;
}

function consumerSettings(o: Pick<WorkQueueOptions<unknown>, "ackWaitMs" | "maxDeliver" | "filterSubject">): WorkConsumerSettings {
  return { ackWaitMs: o.ackWaitMs, maxDeliver: o.maxDeliver, ...(o.filterSubject !== undefined ? { filterSubject: o.filterSubject } : {}) };
}

export async function ensureWorkConsumer(jsm: JetStreamManager, stream: WorkStream, name: string, settings: WorkConsumerSettings): Promise<ConsumerInfo> {
  const { ackWaitMs, maxDeliver, filterSubject = "" } = settings;
  const backoff = workBackoffMs(ackWaitMs, maxDeliver).map((ms) => nanos(ms));
  const want: Partial<ConsumerConfig> = {
    durable_name: name,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(ackWaitMs),
    max_deliver: maxDeliver,
    ...(filterSubject !== "" ? { filter_subject: filterSubject } : {}),
    ...(backoff.length > 0 ? { backoff } : {}),
  };
  const info = await consumerInfo(jsm, stream, name);
  if (info === null) {
    try {
      return await jsm.consumers.add(stream, want);
    } catch (err) {
      if (isJetStreamApiError(err, MoreJetStreamApiCodes.ConsumerFilterNotUnique)) {
        throw new NixcasError(
          "work-queue.consumer-overlap",
          `cannot create consumer ${name} on ${stream}: another consumer of this work-queue stream takes ${filterSubject || "every subject"} too ` +
            `(a worker from before the lanes of INGEST still running?). Stop it, run \`nixcas setup\` (it drops the old consumer), then start this worker again`,
          { cause: err },
        );
      }
      const again = await consumerInfo(jsm, stream, name).catch(() => null);
      if (again === null || !isJetStreamApiError(err, MoreJetStreamApiCodes.ConsumerAlreadyExists, MoreJetStreamApiCodes.ConsumerNameExist)) {
        throw new NixcasError("work-queue.consumer", `cannot create consumer ${name} on ${stream}: ${(err as Error).message}`, { cause: err });
      }
      return ensureWorkConsumer(jsm, stream, name, settings);
    }
  }
  const c = info.config;
  const sameBackoff = JSON.stringify(c.backoff ?? []) === JSON.stringify(backoff);
  const sameFilter = (c.filter_subject ?? "") === filterSubject;
  if (c.ack_wait === want.ack_wait && c.max_deliver === maxDeliver && sameBackoff && sameFilter) return info;
  try {
    // Server 2.9 updates filter_subject too (measured on 2.9.10).
    return await jsm.consumers.update(stream, name, { ack_wait: want.ack_wait!, max_deliver: maxDeliver, backoff, filter_subject: filterSubject });
  } catch (err) {
    throw new NixcasError("work-queue.consumer", `cannot update consumer ${name} on ${stream} (ack_wait, max_deliver, backoff, filter_subject): ${(err as Error).message}`, { cause: err });
  }
}

async function consumerInfo(jsm: JetStreamManager, stream: string, name: string): Promise<ConsumerInfo | null> {
  try {
    return await jsm.consumers.info(stream, name);
  } catch (err) {
    if (isJetStreamApiError(err, JetStreamApiCodes.ConsumerNotFound)) return null;
    throw err;
  }
}

class WorkQueueRunner<T> {
  readonly #o: WorkQueueOptions<T>;
  readonly #log: Logger;
  readonly #abort = new AbortController();
  #stopping = false;
  #loops: Promise<void>[] = [];
  #wake: Array<() => void> = [];

  constructor(options: WorkQueueOptions<T>) {
    this.#o = options;
    this.#log = options.logger.child({ stream: options.stream, consumer: options.consumer });
    const nc: NatsConnection = options.topology.nc;
    void nc.closed().then(() => this.#abort.abort(new NixcasError("nats.closed", "the NATS connection closed")));
  }

  start(): void {
    for (let slot = 0; slot < this.#o.concurrency; slot++) this.#loops.push(this.#slotLoop(slot));
    this.#loops.push(this.#reaperLoop());
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    for (const wake of this.#wake.splice(0)) wake();
    await Promise.all(this.#loops);
  }

  /** One slot: pull one item, work it, repeat. */
  async #slotLoop(slot: number): Promise<void> {
    const { js, nc } = this.#o.topology;
    const expires = Math.max(1000, this.#o.fetchExpiresMs ?? 5000);
    let failures = 0;
    while (!this.#stopping && !nc.isClosed()) {
      try {
        const consumer = await js.consumers.get(this.#o.stream, this.#o.consumer);
        const msg = await pullOne(await consumer.fetch({ max_messages: 1, expires }), expires);
        failures = 0;
        if (msg === null) continue;
        if (this.#stopping) {
          quietly(() => msg.nak()); // fetched after stop(): hand it straight to another worker
          break;
        }
        await this.#process(msg);
      } catch (err) {
        if (this.#stopping || nc.isClosed()) break;
        failures++;
        if (isJetStreamApiError(err, JetStreamApiCodes.ConsumerNotFound)) {
          // Deleted under us (or lost with a server's store): put it back.
          await ensureWorkConsumer(this.#o.topology.jsm, this.#o.stream, this.#o.consumer, consumerSettings(this.#o)).catch(() => {});
        }
        const level = failures > 3 ? "error" : "warn";
        this.#log[level]("work-queue pull failed; retrying", { slot, error: err, failures });
        await this.#sleep(Math.min(250 * 2 ** Math.min(failures, 6), 10_000));
      }
    }
  }

  async #process(msg: JsMsg): Promise<void> {
    const o = this.#o;
    const deliveryCount = msg.info.deliveryCount;
    const log = this.#log.child({ seq: msg.seq, deliveryCount });
    const heartbeat = () => {
      try {
        msg.working();
      } catch (err) {
        // Connection closed or reconnecting: the item will be redelivered if it is really lost.
        log.debug("heartbeat not sent", { error: err });
      }
    };
    const timer = setInterval(heartbeat, Math.max(250, Math.floor(o.ackWaitMs / 3)));
    timer.unref(); // heartbeats alone must not keep a process alive
    const stopHeartbeats = () => clearInterval(timer);
    this.#abort.signal.addEventListener("abort", stopHeartbeats, { once: true });
    try {
      let item: T;
      try {
        item = o.decode(msg.data);
      } catch (err) {
        await this.#deadLetter(msg, undefined, `undecodable work item: ${(err as Error).message}`, log);
        return;
      }
      try {
        // A NATS leader change (a cluster node died) is waited out here, with heartbeats, rather
        // than by a redelivery: redeliveries are counted, and an item acknowledged to its
        // uploader must not run out of them over a failover (docs/nats-notes.md, "Clustered NATS").
        // Handlers are idempotent, so running one again is what a redelivery would do.
        const waitOutUntil = Date.now() + 2 * LEADER_CHANGE_BUDGET_MS;
        for (;;) {
          try {
            await inSpan(o.spanName ?? `work ${o.stream}`, { kind: SpanKind.CONSUMER, parent: msg.headers, attributes: { "nixcas.delivery": deliveryCount } }, () =>
              o.handle(item, { deliveryCount, heartbeat, signal: this.#abort.signal }),
            );
            break;
          } catch (err) {
            if (!isLeaderChange(err) || this.#stopping || Date.now() >= waitOutUntil) throw err;
            log.warn("work item hit a NATS leader change; running it again", { error: err });
            await this.#sleep(1_000);
          }
        }
      } catch (err) {
        const message = (err as Error)?.message ?? String(err);
        if (err instanceof PermanentError) {
          await this.#deadLetter(msg, item, message, log);
        } else if (deliveryCount >= o.maxDeliver) {
          await this.#deadLetter(msg, item, `failed ${deliveryCount} times (max_deliver ${o.maxDeliver}); last error: ${message}`, log);
        } else {
          const delay = (o.retryDelayMs ?? defaultRetryDelay)(deliveryCount);
          log.warn("work item failed; will retry", { error: err, retryInMs: delay });
          quietly(() => msg.nak(delay));
          o.metrics?.ended(o.stream, "retried");
        }
        return;
      }
      o.metrics?.ended(o.stream, "done");
      try {
        await msg.ackAck();
      } catch (err) {
        // Outputs are durable and idempotent: a redelivery redoes the work harmlessly.
        log.warn("ack not confirmed; the item may be delivered again", { error: err });
      }
    } finally {
      clearInterval(timer);
      this.#abort.signal.removeEventListener("abort", stopHeartbeats);
    }
  }

  async #deadLetter(msg: JsMsg, item: T | undefined, reason: string, log: Logger): Promise<void> {
    const recorded = await this.#publishDeadLetter(msg.data, reason, { seq: msg.seq, deliveries: msg.info.deliveryCount, subject: msg.subject }, log);
    if (!recorded) {
      // Not durable anywhere else yet: keep the item (the reaper takes it if deliveries run out).
      quietly(() => msg.nak((this.#o.retryDelayMs ?? defaultRetryDelay)(msg.info.deliveryCount)));
      return;
    }
    await this.#notifyDeadLetter(item, reason, msg.data, log);
    quietly(() => msg.term());
    this.#o.metrics?.ended(this.#o.stream, "dead-lettered");
  }

  /** Copies the item to DEADLETTER; msgID = stream + seq, so the worker and the reaper agree. */
  async #publishDeadLetter(raw: Uint8Array, reason: string, where: { seq: number; deliveries: number; subject: string }, log: Logger): Promise<boolean> {
    const h = natsHeaders();
    h.set(DEAD_LETTER_HEADERS.reason, oneLine(reason));
    h.set(DEAD_LETTER_HEADERS.stream, this.#o.stream);
    h.set(DEAD_LETTER_HEADERS.deliveries, String(where.deliveries));
    h.set(DEAD_LETTER_HEADERS.consumer, this.#o.consumer);
    h.set(DEAD_LETTER_HEADERS.streamSeq, String(where.seq));
    h.set(DEAD_LETTER_HEADERS.subject, where.subject);
    try {
      await this.#o.topology.js.publish(SUBJECTS.deadLetter(this.#o.stream), raw, { headers: h, msgID: `${this.#o.stream}-${where.seq}` });
      log.error("work item dead-lettered", { reason, deliveries: where.deliveries });
      return true;
    } catch (err) {
      log.error("cannot dead-letter work item; keeping it", { reason, error: err });
      return false;
    }
  }

  async #notifyDeadLetter(item: T | undefined, reason: string, raw: Uint8Array, log: Logger): Promise<void> {
    for (let attempt = 1; attempt <= 3; attempt++) {
      try {
        await this.#o.onDeadLetter(item, reason, raw);
        return;
      } catch (err) {
        log.error("onDeadLetter failed", { attempt, error: err });
        if (attempt < 3) await this.#sleep(500 * attempt);
      }
    }
  }

  /**
   * Items whose last delivery was lost (worker crashed or timed out on it) are never
   * redelivered; the server announces them with a MAX_DELIVERIES advisory. This loop consumes
   * those advisories (durable consumer on ADVISORIES, so one worker takes each) and dead-letters
   * the items, deleting them from the work queue.
   */
  async #reaperLoop(): Promise<void> {
    const { js, jsm, nc } = this.#o.topology;
    const name = `${this.#o.consumer}-max-deliveries`;
    const filter = `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${this.#o.stream}.${this.#o.consumer}`;
    let failures = 0;
    while (!this.#stopping && !nc.isClosed()) {
      try {
        if ((await consumerInfo(jsm, STREAMS.advisories, name)) === null) {
          await jsm.consumers.add(STREAMS.advisories, { durable_name: name, ack_policy: AckPolicy.Explicit, filter_subject: filter, deliver_policy: DeliverPolicy.All, ack_wait: nanos(60_000) });
        }
        const consumer = await js.consumers.get(STREAMS.advisories, name);
        const reaperExpires = Math.max(1000, this.#o.fetchExpiresMs ?? 5000);
        const advisory = await pullOne(await consumer.fetch({ max_messages: 1, expires: reaperExpires }), reaperExpires);
        failures = 0;
        if (advisory === null) continue;
        if (this.#stopping) {
          quietly(() => advisory.nak());
          break;
        }
        await this.#reap(advisory);
      } catch (err) {
        if (this.#stopping || nc.isClosed()) break;
        failures++;
        this.#log[failures > 3 ? "error" : "warn"]("max-deliveries reaper failed; retrying", { error: err, failures });
        await this.#sleep(Math.min(500 * 2 ** Math.min(failures, 6), 30_000));
      }
    }
  }

  async #reap(advisory: JsMsg): Promise<void> {
    const { jsm } = this.#o.topology;
    let seq: number;
    let deliveries: number;
    try {
      const a = advisory.json<{ stream_seq?: unknown; deliveries?: unknown }>();
      seq = Number(a.stream_seq);
      deliveries = Number(a.deliveries);
      if (!Number.isSafeInteger(seq) || seq < 1) throw new Error(`stream_seq ${String(a.stream_seq)}`);
    } catch (err) {
      this.#log.warn("ignoring a malformed max-deliveries advisory", { error: err });
      quietly(() => advisory.term());
      return;
    }
    const log = this.#log.child({ seq, deliveries });
    const stored = await jsm.streams.getMessage(this.#o.stream, { seq });
    if (stored === null) {
      await advisory.ackAck(); // already acked, termed or reaped
      return;
    }
    const reason = `delivered ${deliveries} times (max_deliver ${this.#o.maxDeliver}) without an outcome: the worker crashed or stalled on the last delivery`;
    const recorded = await this.#publishDeadLetter(stored.data, reason, { seq, deliveries, subject: stored.subject }, log);
    if (!recorded) {
      quietly(() => advisory.nak(5000));
      return;
    }
    let item: T | undefined;
    try {
      item = this.#o.decode(stored.data);
    } catch {
      item = undefined;
    }
    await this.#notifyDeadLetter(item, reason, stored.data, log);
    try {
      await jsm.streams.deleteMessage(this.#o.stream, seq, false);
    } catch (err) {
      if (!/no message found|not found/i.test((err as Error).message)) throw err;
    }
    await advisory.ackAck();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#wake = this.#wake.filter((w) => w !== done);
        resolve();
      }, ms);
      this.#wake.push(done);
    });
  }
}

/** nak/term are fire-and-forget publishes; on a closed connection they throw: the item comes back anyway. */
function quietly(fn: () => void): void {
  try {
    fn();
  } catch {
    // nothing to do: the server redelivers after ack_wait
  }
}

/**
 * The one message of a fetch, or null when the pull expired. The fetch is closed before the
 * item is worked on, so its idle-heartbeat monitor cannot fire during a long item.
 */
async function pullOne(batch: ConsumerMessages, expiresMs: number): Promise<JsMsg | null> {
  // A pull whose server died (a cluster node killed) may never end: nats.js pauses a fetch's
  // heartbeat monitor on disconnect and resumes it only when its consumer check after the
  // reconnect succeeds, which it may not while the stream has no leader. Seen as a chunker whose
  // stop() hung in tests/integration/nats-cluster.test.ts; bounded here.
  const guard = setTimeout(() => batch.stop(), expiresMs * 2 + 5_000);
  try {
    for await (const msg of batch) return msg;
    return null;
  } finally {
    clearTimeout(guard);
  }
}

function defaultRetryDelay(deliveryCount: number): number {
  return Math.min(1000 * 2 ** Math.max(0, deliveryCount - 1), 60_000);
}

/** Header values cannot hold line breaks; keep them short, too. */
function oneLine(text: string): string {
  const flat = text.replace(/[\r\n]+/g, " ").trim();
  return flat.length > 2000 ? flat.slice(0, 1997) + "..." : flat;
}
