// The bucket lifecycle rule `nixcas setup` installs for packs (NIXCAS_S3_LIFECYCLE, e.g.
// `GLACIER_IR:30,DEEP_ARCHIVE:180`): S3 itself then moves packs to cheaper classes as they age,
// and readers learn an object's current class from HEAD (docs/tiering.md, "Cold tier backends
// and packs").
//
// A bucket has ONE lifecycle configuration holding all its rules, and PUT replaces it whole
// (https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutBucketLifecycleConfiguration.html):
// so the current configuration is read first, only the rule with nixcas's id is replaced, and
// rules others installed on the bucket are kept.
import {
  DeleteBucketLifecycleCommand,
  GetBucketLifecycleConfigurationCommand,
  PutBucketLifecycleConfigurationCommand,
  S3ServiceException,
  type LifecycleRule,
  type TransitionStorageClass,
} from "@aws-sdk/client-s3";
import { ConfigError, NixcasError } from "../errors.ts";
import { COLD_ERRORS } from "./cold-errors.ts";
import { PACKS_PREFIX } from "./pack.ts";
import type { S3ColdStore } from "./s3-cold-store.ts";

/** Id of the rule nixcas owns in the bucket's lifecycle configuration. */
export const LIFECYCLE_RULE_ID = "nixcas-packs";

/** Classes S3 can transition objects to (https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-transition-general-considerations.html). */
const TRANSITION_CLASSES: ReadonlySet<string> = new Set(["STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"]);

export interface LifecycleTransition {
  storageClass: string;
  /** Days after the object's creation. */
  days: number;
}

export type LifecycleAction = "created" | "updated" | "unchanged" | "removed" | "absent";

/** Parses NIXCAS_S3_LIFECYCLE: `none` (or empty) → no transitions; else `<class>:<days>,…` with days increasing. */
export function parseLifecycle(text: string): LifecycleTransition[] {
  const trimmed = text.trim();
  if (trimmed === "" || trimmed === "none") return [];
  const transitions = trimmed.split(",").map((part): LifecycleTransition => {
    const m = /^([A-Z_]+):(0|[1-9][0-9]{0,4})$/.exec(part.trim());
    if (m === null) throw new ConfigError(`NIXCAS_S3_LIFECYCLE: '${part.trim()}' is not <storage class>:<days> (e.g. GLACIER_IR:30,DEEP_ARCHIVE:180), and the whole value is not 'none'`);
    if (!TRANSITION_CLASSES.has(m[1]!)) throw new ConfigError(`NIXCAS_S3_LIFECYCLE: S3 cannot transition objects to '${m[1]}'; one of ${[...TRANSITION_CLASSES].join(", ")}`);
    return { storageClass: m[1]!, days: Number(m[2]) };
  });
  for (let i = 1; i < transitions.length; i++) {
    if (transitions[i]!.days <= transitions[i - 1]!.days) {
      throw new ConfigError(`NIXCAS_S3_LIFECYCLE: transitions must come in order of increasing days; ${transitions[i]!.storageClass}:${transitions[i]!.days} follows ${transitions[i - 1]!.storageClass}:${transitions[i - 1]!.days}`);
    }
  }
  return transitions;
}

/** The rule for `transitions` over the store's packs (only its `packs/` keys: nothing else nixcas may write there later). */
export function lifecycleRule(store: S3ColdStore, transitions: LifecycleTransition[]): LifecycleRule {
  return {
    ID: LIFECYCLE_RULE_ID,
    Status: "Enabled",
    Filter: { Prefix: store.prefix + PACKS_PREFIX },
    Transitions: transitions.map((t) => ({ Days: t.days, StorageClass: t.storageClass as TransitionStorageClass })),
  };
}

/**
 * Makes the bucket's nixcas rule match `transitions` (none: no rule), keeping other rules.
 * Returns what it did, for `nixcas setup` to print.
 */
export async function installLifecycleRule(store: S3ColdStore, transitions: LifecycleTransition[]): Promise<LifecycleAction> {
  const rules = await currentRules(store);
  const others = rules.filter((r) => r.ID !== LIFECYCLE_RULE_ID);
  const existing = rules.find((r) => r.ID === LIFECYCLE_RULE_ID);
  if (transitions.length === 0) {
    if (existing === undefined) return "absent";
    await send(store, () =>
      others.length === 0
        ? store.client.send(new DeleteBucketLifecycleCommand({ Bucket: store.bucket }))
        : store.client.send(new PutBucketLifecycleConfigurationCommand({ Bucket: store.bucket, LifecycleConfiguration: { Rules: others } })),
    );
    return "removed";
  }
  const wanted = lifecycleRule(store, transitions);
  if (existing !== undefined && sameRule(existing, wanted)) return "unchanged";
  await send(store, () => store.client.send(new PutBucketLifecycleConfigurationCommand({ Bucket: store.bucket, LifecycleConfiguration: { Rules: [...others, wanted] } })));
  return existing === undefined ? "created" : "updated";
}

async function currentRules(store: S3ColdStore): Promise<LifecycleRule[]> {
  try {
    const res = await store.client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: store.bucket }));
    return res.Rules ?? [];
  } catch (err) {
    if (err instanceof S3ServiceException && err.name === "NoSuchLifecycleConfiguration") return [];
    throw lifecycleError(store, err);
  }
}

async function send(store: S3ColdStore, call: () => Promise<unknown>): Promise<void> {
  try {
    await call();
  } catch (err) {
    throw lifecycleError(store, err);
  }
}

function lifecycleError(store: S3ColdStore, err: unknown): NixcasError {
  const name = err instanceof S3ServiceException ? `${err.name}: ` : "";
  return new NixcasError(COLD_ERRORS.lifecycle, `cannot install the lifecycle rule ${LIFECYCLE_RULE_ID} on bucket ${store.bucket}: ${name}${(err as Error).message} (the credentials need s3:GetLifecycleConfiguration and s3:PutLifecycleConfiguration)`, { cause: err });
}

function sameRule(a: LifecycleRule, b: LifecycleRule): boolean {
  const transitions = (r: LifecycleRule) => (r.Transitions ?? []).map((t) => `${t.StorageClass}:${t.Days}`).join(",");
  return a.Status === b.Status && a.Filter?.Prefix === b.Filter?.Prefix && transitions(a) === transitions(b);
}
