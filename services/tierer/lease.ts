// One tiering or GC pass at a time across tierer replicas (docs/tiering.md, "The tiering pass"):
// a lease in KV `tierer`, taken with a create (or an update of an expired one at its revision),
// renewed while the pass runs, released at its end. A replica that dies holding it blocks the
// others only until `until`; KV revisions make take-over and renewal compare-and-set, so two
// replicas never both believe they hold it.
import type { KV } from "@nats-io/kv";
import { NixcasError } from "../../shared/errors.ts";

/** KV `tierer`, key = what is leased (`pass`). */
export interface LeaseRecord {
  holder: string;
  /** What the holder is doing, for people: "tiering", "gc". */
  doing: string;
  until: string;
}

/** The key every pass takes: tiering and GC never run at once (GC must not sweep a pack being written). */
export const PASS_LEASE = "pass";

export class Lease {
  readonly #kv: KV;
  readonly #record: LeaseRecord;
  readonly #ttlMs: number;
  #revision: number;

  private constructor(kv: KV, record: LeaseRecord, ttlMs: number, revision: number) {
    this.#kv = kv;
    this.#record = record;
    this.#ttlMs = ttlMs;
    this.#revision = revision;
  }

  /** Takes the lease, or returns who holds it when someone else does and it has not expired. */
  static async acquire(kv: KV, holder: string, doing: string, ttlMs: number, now = Date.now()): Promise<Lease | LeaseRecord> {
    const record: LeaseRecord = { holder, doing, until: new Date(now + ttlMs).toISOString() };
    const body = JSON.stringify(record);
    const current = await kv.get(PASS_LEASE);
    try {
      if (current === null || current.operation !== "PUT") {
        // A deleted key is taken over at its revision (create refuses only a live value).
        const revision = current === null ? await kv.create(PASS_LEASE, body) : await kv.update(PASS_LEASE, body, current.revision);
        return new Lease(kv, record, ttlMs, revision);
      }
      const held = current.json<LeaseRecord>();
      if (Date.parse(held.until) > now && held.holder !== holder) return held;
      return new Lease(kv, record, ttlMs, await kv.update(PASS_LEASE, body, current.revision));
    } catch (err) {
      // Another replica won the race between our read and our write.
      const after = await kv.get(PASS_LEASE);
      if (after !== null && after.operation === "PUT") return after.json<LeaseRecord>();
      throw new NixcasError("tier.lease", `cannot take the tierer's lease in KV tierer: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Extends the lease; NixcasError `tier.lease-lost` when another replica took it over (the pass must stop). */
  async renew(now = Date.now()): Promise<void> {
    const record: LeaseRecord = { ...this.#record, until: new Date(now + this.#ttlMs).toISOString() };
    try {
      this.#revision = await this.#kv.update(PASS_LEASE, JSON.stringify(record), this.#revision);
    } catch (err) {
      throw new NixcasError("tier.lease-lost", `the tierer's lease (${this.#record.doing}) was taken over by another replica; this pass stops: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Gives the lease up (only if still ours). */
  async release(): Promise<void> {
    await this.#kv.delete(PASS_LEASE, { previousSeq: this.#revision }).catch(() => {});
  }
}
