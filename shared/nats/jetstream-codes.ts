// The JetStream API error codes nixcas reacts to, and the predicates built on them. Codes that
// @nats-io/jetstream names (`JetStreamApiCodes`) are used from there; the others are named here,
// once, with the constant name and description the NATS server gives them in its list of errors
// (https://github.com/nats-io/nats-server/blob/main/server/errors.json).
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import { causes } from "../errors.ts";

/** Codes @nats-io/jetstream has no name for. */
export const MoreJetStreamApiCodes = {
  /** JSConsumerNameExistErr, "consumer name already in use". */
  ConsumerNameExist: 10013,
  /** JSStreamNameExistErr, "stream name already in use with a different configuration". */
  StreamNameExist: 10058,
  /** JSStreamSubjectOverlapErr, "subjects overlap with an existing stream". */
  StreamSubjectOverlap: 10065,
  /**
   * JSStreamStoreFailedF, a message could not be stored; among others "maximum messages per
   * subject exceeded" when the stream discards new messages per subject.
   */
  StreamStoreFailed: 10077,
  /** JSSequenceNotFoundErrF, "sequence {seq} not found": a delete of a sequence already deleted (measured on 2.9.10). */
  SequenceNotFound: 10043,
  /** JSStreamMsgDeleteFailedF, a message delete failed; "no message found" when the sequence is already gone. */
  StreamMsgDeleteFailed: 10057,
  /** JSConsumerAlreadyExists, "consumer already exists" (created again with another config). */
  ConsumerAlreadyExists: 10148,
  /** JSConsumerWQConsumerNotUniqueErr, "filtered consumer not unique on workqueue stream": its filter overlaps another consumer's. */
  ConsumerFilterNotUnique: 10100,
  /** JSAccountResourcesExceededErr, "resource limits exceeded for account". */
  AccountResourcesExceeded: 10002,
  /** JSInsufficientResourcesErr, "insufficient resources" (the server's own JetStream limits). */
  InsufficientResources: 10023,
  /** JSMemoryResourcesExceededErr, "insufficient memory resources available". */
  MemoryResourcesExceeded: 10028,
  /** JSStorageResourcesExceededErr, "insufficient storage resources available". */
  StorageResourcesExceeded: 10047,
} as const;

/** Whether `err` is the JetStream API's answer with one of these codes. */
export function isJetStreamApiError(err: unknown, ...codes: number[]): err is JetStreamApiError {
  return err instanceof JetStreamApiError && codes.includes(err.code);
}

/**
 * A publish with an expected last (subject) sequence found another one: the key or subject was
 * written in between. Servers answer 10071 ("wrong last sequence: <seq>") or, newer ones, 10164
 * ("wrong last sequence").
 */
export function isWrongLastSequence(err: unknown): boolean {
  return isJetStreamApiError(err, JetStreamApiCodes.StreamWrongLastSequence, JetStreamApiCodes.StreamWrongLastSequenceUnknown);
}

/**
 * The server's answers when a write does not fit: the stream's own limits (max_bytes, max_msgs:
 * 10077 with the limit in the description, measured on 2.9.10), the server's or account's
 * JetStream storage (10023 "insufficient resources", 10002 "resource limits exceeded for
 * account", 10047 "insufficient storage resources available"), or the disk itself. Names from
 * the server's errors.json and store errors (https://github.com/nats-io/nats-server/blob/main/server/store.go).
 */
const STORAGE_FULL_CODES = [
  MoreJetStreamApiCodes.AccountResourcesExceeded,
  MoreJetStreamApiCodes.InsufficientResources,
  MoreJetStreamApiCodes.MemoryResourcesExceeded,
  MoreJetStreamApiCodes.StorageResourcesExceeded,
];
const STORE_FAILED_FULL = /maximum bytes exceeded|maximum messages exceeded|insufficient resources|resource limits exceeded|no space left/i;

/**
 * Whether `err` (or an error in its `cause` chain) says JetStream is out of space or at a limit.
 * Such a write fails the same way until an operator frees space or raises the limit: the caller
 * fails the request at once with this cause instead of retrying. Not a dedup refusal: 10077
 * "maximum messages per subject exceeded" is a block already stored (`isRefusedAsAlreadyStored`).
 */
export function isStorageFull(err: unknown): boolean {
  for (const e of causes(err)) {
    if ((e as { code?: unknown }).code === "storage.full") return true;
    if (isJetStreamApiError(e, ...STORAGE_FULL_CODES)) return true;
    if (isJetStreamApiError(e, MoreJetStreamApiCodes.StreamStoreFailed) && !/per subject/i.test(e.message) && STORE_FAILED_FULL.test(e.message)) return true;
  }
  return false;
}

/**
 * A block publish the server refused because the subject already holds a message: the block is
 * stored (BLOCKS keeps one message per subject and discards new ones). With the expectation
 * "last subject sequence 0" that is 10071/10164; without it, discard_new_per_subject answers
 * 10077 "maximum messages per subject exceeded". Other 10077s (a full stream) are not.
 */
export function isRefusedAsAlreadyStored(err: unknown): boolean {
  if (isWrongLastSequence(err)) return true;
  return isJetStreamApiError(err, MoreJetStreamApiCodes.StreamStoreFailed) && /maximum messages per subject exceeded/i.test(err.message);
}

/** The server's reason for a full store, for a message a user can act on. */
export function storageFullReason(err: unknown): string {
  for (const e of causes(err)) {
    if (e instanceof JetStreamApiError) return `NATS JetStream is out of storage (server: "${e.message}", code ${e.code}); free space or raise the stream/account limits, then retry`;
  }
  return `NATS JetStream is out of storage (${err instanceof Error ? err.message : String(err)}); free space or raise the stream/account limits, then retry`;
}
