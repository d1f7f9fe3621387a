// NARs uploaded by PUT /nar/<name> and waiting for their narinfo: KV `staged`, key
// `nar.<name>` (the name as the client chose it — the narinfo's `URL: nar/<name>` points back to
// it), value the object in `staging` that holds the bytes.
import { escapeKey } from "../../shared/nats/subjects.ts";
import type { Gateway } from "./context.ts";
import { badRequest } from "./http-errors.ts";

/** Names we accept for a NAR upload: one path segment of safe characters. */
const NAR_NAME_CHARS = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$/;

export function checkNarName(name: string): void {
  if (!NAR_NAME_CHARS.test(name)) {
    throw badRequest("nar.name", `invalid NAR name ${JSON.stringify(name.slice(0, 100))}: one path segment of letters, digits and . _ + - (at most 200)`);
  }
}

/** Whether `name` could be a NAR name we accepted (one safe path segment). */
export function isNarName(name: string): boolean {
  return NAR_NAME_CHARS.test(name);
}

export function stagedKey(name: string): string {
  return `nar.${escapeKey(name)}`;
}

export interface StagedLookup {
  object: string;
  size: number;
}

/**
 * The staged NAR named `name`, if its record exists and its object is still there (the chunker
 * deletes the object once the path is indexed; the record then only expires).
 */
export async function findStaged(gw: Gateway, name: string): Promise<StagedLookup | null> {
  if (!NAR_NAME_CHARS.test(name)) return null;
  // With replicas, a KV or object read may be answered by a follower that has not yet applied
  // the record the NAR PUT just wrote (direct gets, docs/nats-notes.md "Clustered NATS"; seen
  // while a node died): a miss is looked at again for a moment before it counts.
  const deadline = Date.now() + (gw.config.replicas > 1 ? STALE_READ_GRACE_MS : 0);
  for (;;) {
    const found = await lookUpStaged(gw, name);
    if (found !== null || Date.now() >= deadline) return found;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** How long a staged NAR missing on a replicated cache is looked for again. */
const STALE_READ_GRACE_MS = 2_000;

async function lookUpStaged(gw: Gateway, name: string): Promise<StagedLookup | null> {
  const staged = await gw.catalog.getStaged(stagedKey(name));
  if (staged === null) return null;
  const object = await gw.staging.info(staged.object);
  if (object === null) return null;
  return { object: staged.object, size: object.size };
}

/** `nar/<name>` from a narinfo URL relative to the cache root; null for anything else. */
export function narNameFromUrl(url: string): string | null {
  const m = /^nar\/([^/?#]+)$/.exec(url);
  return m ? m[1]! : null;
}
