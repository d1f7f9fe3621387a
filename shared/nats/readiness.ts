// Readiness of a process's NATS side, for `/readyz` (gateway, and the health port of a lone
// service) and the `$SRV` STATS of every service: the connection is up, JetStream answers its
// API, and a KV bucket can be read. Liveness (`/healthz`) is deliberately not this: a process
// whose NATS is away is alive and recovers by itself when NATS comes back, so an orchestrator
// should route around it (readiness), not restart it (liveness).
//
// One checker per connection (`readinessOf`): the connection state comes from its status
// events, and the two JetStream requests are made at most once per CACHE_MS however many probes
// ask, so an unauthenticated `/readyz` cannot be used to load the NATS server.
import type { NatsConnection } from "@nats-io/nats-core";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";

export interface ReadinessReport {
  ready: boolean;
  /** Why not ready, in one line (absent when ready). */
  reason?: string;
  /** "ok", or what failed, per check. */
  checks: { nats: string; jetstream: string; kv: string };
}

/** A JetStream request that takes longer than this counts as "not answering". */
const CHECK_TIMEOUT_MS = 2_000;
/** How long a report is reused. */
const CACHE_MS = 1_000;
/** The bucket read by the KV check: the one every narinfo GET reads. */
const PROBE_BUCKET = "paths";
/** A key that never exists: reading it proves the bucket answers, at the cost of one direct get. */
const PROBE_KEY = "nixcas-readiness-probe";

export class Readiness {
  readonly #nc: NatsConnection;
  #disconnected: string | null = null;
  #jsm: JetStreamManager | null = null;
  #kv: KV | null = null;
  #last: { at: number; report: Promise<ReadinessReport> } | null = null;

  constructor(nc: NatsConnection) {
    this.#nc = nc;
    void this.#watch();
  }

  /** The current report (computed at most once per second). */
  check(): Promise<ReadinessReport> {
    const now = Date.now();
    if (this.#last && now - this.#last.at < CACHE_MS) return this.#last.report;
    const report = this.#compute();
    this.#last = { at: now, report };
    return report;
  }

  async #watch(): Promise<void> {
    for await (const s of this.#nc.status()) {
      if (s.type === "disconnect") this.#disconnected = `disconnected from ${s.server}, reconnecting`;
      else if (s.type === "reconnect") this.#disconnected = null;
      else continue;
      this.#last = null; // a state change is visible at once, not after the cache expires
    }
  }

  async #compute(): Promise<ReadinessReport> {
    const nc = this.#nc;
    const natsProblem = nc.isClosed() ? "connection closed" : nc.isDraining() ? "connection draining (stopping)" : this.#disconnected;
    if (natsProblem) return notReady({ nats: natsProblem, jetstream: "not checked", kv: "not checked" }, `NATS ${natsProblem}`);
    const jetstreamCheck = await attempt(async () => {
      this.#jsm ??= await jetstreamManager(nc, { timeout: CHECK_TIMEOUT_MS, checkAPI: false });
      await this.#jsm.getAccountInfo();
    });
    if (jetstreamCheck !== "ok") return notReady({ nats: "ok", jetstream: jetstreamCheck, kv: "not checked" }, `JetStream is not answering: ${jetstreamCheck}`);
    const kvCheck = await attempt(async () => {
      this.#kv ??= await new Kvm(jetstream(nc, { timeout: CHECK_TIMEOUT_MS })).open(PROBE_BUCKET);
      await this.#kv.get(PROBE_KEY);
    });
    if (kvCheck !== "ok") return notReady({ nats: "ok", jetstream: "ok", kv: kvCheck }, `KV bucket '${PROBE_BUCKET}' is not readable: ${kvCheck}`);
    return { ready: true, checks: { nats: "ok", jetstream: "ok", kv: "ok" } };
  }
}

function notReady(checks: ReadinessReport["checks"], reason: string): ReadinessReport {
  return { ready: false, reason, checks };
}

/** "ok", or the error's message; never slower than CHECK_TIMEOUT_MS (plus a margin). */
async function attempt(step: () => Promise<void>): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`no answer within ${CHECK_TIMEOUT_MS} ms`), CHECK_TIMEOUT_MS + 500);
  });
  try {
    return await Promise.race([step().then(() => "ok", (err: unknown) => (err as Error)?.message ?? String(err)), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const checkers = new WeakMap<NatsConnection, Readiness>();

/** The one readiness checker of `nc`. */
export function readinessOf(nc: NatsConnection): Readiness {
  let r = checkers.get(nc);
  if (!r) {
    r = new Readiness(nc);
    checkers.set(nc, r);
  }
  return r;
}
