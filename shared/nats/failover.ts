// JetStream writes across a leader change. When the node leading a replicated stream dies, the
// other replicas elect a new leader within seconds (docs/nats-notes.md, "Clustered NATS"); until
// then a publish or KV write finds nobody to answer it (503 no responders, which the client
// reports as "jetstream is not enabled"), or times out, and a client that was connected to the
// dead node is reconnecting. Those failures are retried for a bounded time; any other error is
// thrown at once. Only for idempotent writes: a publish with a Nats-Msg-Id (the stream's
// duplicate window drops a second copy), or a KV compare-and-set that re-reads on conflict.
import { NoRespondersError, TimeoutError } from "@nats-io/nats-core";
import { jserrors } from "@nats-io/jetstream/internal";
import { causes, NixcasError } from "../errors.ts";

/**
 * How long a write keeps trying through a leader change: R3 elections took 1–10 s in
 * tests/integration/nats-cluster.test.ts; twice this (the ingester writes a status, then the
 * work item) stays inside the 30 s an IngestClient request waits.
 */
export const LEADER_CHANGE_BUDGET_MS = 12_000;

/** The code of a service's error reply that is a leader change on its side (the client may ask again). */
export const LEADER_CHANGE_CODE = "nats.leader-change";

/** True for the failures a leader change causes (and that end with it). */
export function isLeaderChange(err: unknown): boolean {
  for (const e of causes(err)) {
    if (e instanceof jserrors.JetStreamNotEnabled || e instanceof NoRespondersError || e instanceof TimeoutError) return true;
    if (e instanceof NixcasError && e.code === LEADER_CHANGE_CODE) return true;
  }
  return false;
}

export interface LeaderChangeRetry {
  budgetMs?: number;
  /**
   * A stream deleted under a running cache fails the same way as a leader change ("no
   * responders"): `explain` (explainMissingStream, topology.ts) tells them apart; when it returns
   * another error than the one it was given, that error is thrown at once instead of retrying.
   */
  explain?: (err: unknown) => Promise<unknown>;
}

/** Runs `write`, again while it fails with `isLeaderChange`, for at most `budgetMs`. */
export async function retryThroughLeaderChange<T>(write: () => Promise<T>, options: LeaderChangeRetry = {}): Promise<T> {
  const deadline = Date.now() + (options.budgetMs ?? LEADER_CHANGE_BUDGET_MS);
  for (let attempt = 0; ; attempt++) {
    try {
      return await write();
    } catch (err) {
      if (!isLeaderChange(err) || Date.now() >= deadline) throw err;
      const explained = options.explain ? await options.explain(err) : err;
      if (explained !== err) throw explained;
      await new Promise((r) => setTimeout(r, Math.min(1_000, 100 * 2 ** attempt)));
    }
  }
}
