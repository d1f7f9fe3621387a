// One pass over the messages of a stream, oldest first, for the tierer's whole-store walks
// (garbage collection's scan of BLOCKS, its reads of KV buckets): an ordered pull consumer, in
// batches, optionally headers only (a BLOCKS scan never downloads a frame: the server sends the
// body's size in Nats-Msg-Size), optionally the last message per subject (a KV bucket's current
// entries). Memory stays at one batch whatever the stream holds.
import { DeliverPolicy, JsHeaders, type JsMsg } from "@nats-io/jetstream";
import { NixcasError } from "../errors.ts";
import { kvKeySubject } from "./subjects.ts";
import type { KvBucketName, Topology } from "./topology.ts";

export interface StreamScanOptions {
  /** Bodies are not sent; `ScannedMessage.bytes` comes from Nats-Msg-Size. */
  headersOnly?: boolean;
  /** Only the newest message of each subject (a KV bucket's entries). */
  lastPerSubject?: boolean;
  /** Messages per pull. */
  batch?: number;
}

export interface ScannedMessage {
  seq: number;
  subject: string;
  /** When the server stored it, Unix milliseconds. */
  timeMs: number;
  /** Body bytes (from Nats-Msg-Size when headers only). */
  bytes: number;
  /** Empty when headers only. */
  data: Uint8Array;
  msg: JsMsg;
}

/**
 * Every message of `stream` stored before the scan began (later ones may be included too), in
 * stream order. Stops early if the consumer stops early; the consumer is deleted either way.
 */
export async function* scanStream(topology: Topology, stream: string, options: StreamScanOptions = {}): AsyncGenerator<ScannedMessage> {
  let info;
  try {
    info = await topology.jsm.streams.info(stream);
  } catch (err) {
    throw new NixcasError("scan.stream", `cannot read stream ${stream}: ${(err as Error).message}`, { cause: err });
  }
  if (info.state.messages === 0) return;
  const lastSeq = info.state.last_seq;
  const consumer = await topology.js.consumers.get(stream, {
    ...(options.headersOnly ? { headers_only: true } : {}),
    deliver_policy: options.lastPerSubject ? DeliverPolicy.LastPerSubject : DeliverPolicy.All,
  });
  // consume() streams batches ahead of the reader; it stops at the message that leaves nothing
  // pending (every subject matches, so a stream with messages always delivers one).
  const messages = await consumer.consume({ max_messages: options.batch ?? 1000 });
  try {
    for await (const m of messages) {
      const size = options.headersOnly ? Number(m.headers?.get(JsHeaders.MessageSizeHdr) ?? "0") : m.data.length;
      yield { seq: m.seq, subject: m.subject, timeMs: Math.floor(m.info.timestampNanos / 1e6), bytes: size, data: m.data, msg: m };
      if (m.info.pending === 0 || m.seq >= lastSeq) return;
    }
  } finally {
    await messages.close().catch(() => {});
    await consumer.delete().catch(() => {});
  }
}

/** One current entry of a KV bucket. */
export interface KvEntryScan {
  key: string;
  value: Uint8Array;
  /** When this value was written, Unix milliseconds. */
  createdMs: number;
  revision: number;
}

/** The current entries of a KV bucket (deleted and purged keys left out), in write order. */
export async function* scanKv(topology: Topology, bucket: KvBucketName): AsyncGenerator<KvEntryScan> {
  const prefix = kvKeySubject(bucket, "");
  for await (const m of scanStream(topology, `KV_${bucket}`, { lastPerSubject: true })) {
    const op = m.msg.headers?.get(KV_OPERATION_HEADER) ?? "";
    if (op === "DEL" || op === "PURGE") continue;
    yield { key: m.subject.slice(prefix.length), value: m.data, createdMs: m.timeMs, revision: m.seq };
  }
}

/** The header the KV layer marks deletes and purges with. */
const KV_OPERATION_HEADER = "KV-Operation";
