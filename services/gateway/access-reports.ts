// Access reports to the tierer (docs/tiering.md, "Access"): the gateway notes every narinfo it
// serves and, every minute, publishes the hash parts it served on `nixcas.tier.access` — each
// path at most once an hour, so a hot path costs one report an hour per gateway, not one per
// request. A report lost (no tierer running, NATS down) only makes a path look older than it is,
// and a pass moves a path only after NIXCAS_COLD_AFTER (45 days by default) without any.
//
// Narinfo reads are what counts, not NAR reads: a NAR is named by its NAR hash, not its path,
// and Nix fetches a narinfo at least every 30 days (its positive narinfo cache) before it fetches
// the NAR — which is why NIXCAS_COLD_AFTER must stay above 30 days.
import type { NatsConnection } from "@nats-io/nats-core";
import type { Logger } from "../../shared/log.ts";
import { TIER_SUBJECTS, type AccessReport } from "../../shared/nats/tier-protocol.ts";

export interface AccessReporterOptions {
  /** How often pending reads are published. */
  intervalMs?: number;
  /** A path is reported again only this long after its last report. */
  repeatMs?: number;
}

/** Hash parts per message: 33 bytes each, well under NATS's 1 MiB default max payload. */
const HASH_PARTS_PER_REPORT = 10_000;

export class AccessReporter {
  readonly #nc: NatsConnection;
  readonly #logger: Logger;
  readonly #repeatMs: number;
  readonly #pending = new Set<string>();
  readonly #reported = new Map<string, number>();
  readonly #timer: NodeJS.Timeout;

  constructor(nc: NatsConnection, logger: Logger, options: AccessReporterOptions = {}) {
    this.#nc = nc;
    this.#logger = logger;
    this.#repeatMs = options.repeatMs ?? 3_600_000;
    this.#timer = setInterval(() => this.flush(), options.intervalMs ?? 60_000);
    this.#timer.unref();
  }

  /** A read of the path's narinfo. */
  seen(hashPart: string): void {
    const last = this.#reported.get(hashPart);
    if (last !== undefined && Date.now() - last < this.#repeatMs) return;
    this.#pending.add(hashPart);
  }

  /** Publishes what is pending now. */
  flush(): void {
    const now = Date.now();
    for (const [hashPart, at] of this.#reported) if (now - at >= this.#repeatMs) this.#reported.delete(hashPart);
    if (this.#pending.size === 0) return;
    const hashParts = [...this.#pending];
    this.#pending.clear();
    for (let i = 0; i < hashParts.length; i += HASH_PARTS_PER_REPORT) {
      const report: AccessReport = { hashParts: hashParts.slice(i, i + HASH_PARTS_PER_REPORT), at: new Date(now).toISOString() };
      try {
        this.#nc.publish(TIER_SUBJECTS.accessReport, JSON.stringify(report));
      } catch (err) {
        this.#logger.warn("cannot publish an access report", { paths: report.hashParts.length, error: err });
        continue;
      }
      for (const h of report.hashParts) this.#reported.set(h, now);
    }
  }

  /** Publishes what is pending and stops the timer. */
  stop(): void {
    clearInterval(this.#timer);
    this.flush();
  }
}
