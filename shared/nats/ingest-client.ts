// The TypeScript client of the NATS upload API (ingest-protocol.ts; docs/ingest-protocol.md).
// Used by `nixcas push`, the gateway (narinfo PUT) and tests.
//
// A request is answered once the work item (or, for `putBlock`, the block) is durable in
// JetStream; a rejected request throws the ingester's own error (FormatError / IntegrityError
// with its code and message), and then nothing was enqueued or stored.
import type { MsgHdrs, NatsConnection } from "@nats-io/nats-core";
import type { CID } from "multiformats/cid";
import { causes, NixcasError } from "../errors.ts";
import { isLeaderChange } from "./failover.ts";
import { Semaphore } from "./flow-control.ts";
import { encodeIngestBlockRequest, MAX_STATUS_WAIT_MS, type IngestBlockReply, type IngestStatusRequest, type IngestManifestRequest, type IngestNarRequest, type NarSource } from "./ingest-protocol.ts";
import { newStagingObjectName, StagingStore } from "./staging-store.ts";
import { requestService } from "./service.ts";
import { SUBJECTS } from "./subjects.ts";
import type { Topology } from "./topology.ts";
import { isTerminal, type UploadStatus } from "./uploads.ts";
import { INLINE_MAX_BYTES, type UploadMetadata } from "./work-items.ts";

/** How long a submit is sent again while no ingester answers (one reconnecting to another NATS node). */
const NO_RESPONDERS_RETRY_MS = 5_000;

/** Retries of a block the ingester is too busy to take (about a minute in all). */
const BUSY_RETRIES = 35;

export interface IngestClientOptions {
  /** How long a request waits for the ingester's answer; default 30 s. */
  requestTimeoutMs?: number;
  /** `putBlock` requests awaiting their reply at once; default 64 (more waits for a slot). */
  maxBlocksInFlight?: number;
}

export class IngestClient {
  readonly #nc: NatsConnection;
  readonly #staging: StagingStore | null;
  readonly #timeoutMs: number;
  readonly #blockSlots: Semaphore;

  /** `staging`: where NARs too large for a request are staged; without it only `uploadNar` of small NARs, blocks and manifests work (what a pusher may do). */
  constructor(nc: NatsConnection, options: IngestClientOptions & { staging?: StagingStore } = {}) {
    this.#nc = nc;
    this.#staging = options.staging ?? null;
    this.#timeoutMs = options.requestTimeoutMs ?? 30_000;
    this.#blockSlots = new Semaphore(options.maxBlocksInFlight ?? 64);
  }

  /**
   * Uploads a whole NAR (compressed with `compression`, default "none"). Up to INLINE_MAX_BYTES
   * it travels inside the request; larger ones are streamed into the `staging` object store
   * first (NATS messages are limited to ~1 MiB), and the staged object is submitted.
   */
  async uploadNar(meta: UploadMetadata, nar: Uint8Array | AsyncIterable<Uint8Array>, options: { compression?: string } = {}): Promise<{ uploadId: string }> {
    const compression = options.compression ?? "none";
    if (nar instanceof Uint8Array) {
      if (nar.length <= INLINE_MAX_BYTES) return this.#submitInline(meta, nar, compression);
      return this.#stageAndSubmit(meta, [nar], compression);
    }
    // Read just past the inline limit to know which way to go, keeping what was read.
    const iterator = nar[Symbol.asyncIterator]();
    const head: Uint8Array[] = [];
    let headBytes = 0;
    let ended = false;
    while (headBytes <= INLINE_MAX_BYTES) {
      const r = await iterator.next();
      if (r.done) {
        ended = true;
        break;
      }
      head.push(r.value);
      headBytes += r.value.length;
    }
    if (ended) return this.#submitInline(meta, Buffer.concat(head), compression);
    const rest: AsyncIterable<Uint8Array> = { [Symbol.asyncIterator]: () => iterator };
    return this.#stageAndSubmit(meta, concatSources(head, rest), compression);
  }

  /**
   * Submits a NAR already in the `staging` object store (the gateway's PUT nar/… put it there).
   * `fileName`: the name the file was uploaded under (`<sha256 of the object>.nar[.ext]`), for
   * the cache to serve it under that name too once the path is indexed.
   */
  async submitStaged(meta: UploadMetadata, staged: { object: string; compression: string; fileName?: string | null }): Promise<{ uploadId: string }> {
    const nar: NarSource = { kind: "staged", object: staged.object, compression: staged.compression };
    if (staged.fileName != null) nar.fileName = staged.fileName;
    const request: IngestNarRequest = { meta, nar };
    return this.#request(SUBJECTS.ingestNar, request);
  }

  /**
   * Submits a NAR the caller chunked itself: every chunk and manifest node must already be
   * published as blocks (ask `nixcas.index.missing-chunks` which ones the cache lacks).
   */
  async submitManifest(meta: UploadMetadata, root: CID): Promise<{ uploadId: string }> {
    const request: IngestManifestRequest = { meta, manifest: root.toString() };
    return this.#request(SUBJECTS.ingestManifest, request);
  }

  /**
   * Sends one block (its zstd frame, uncompressed `size`) for the ingester to verify and store:
   * "stored", or "duplicate" when an intact copy was there. A frame that does not decode to
   * bytes hashing to `cid` is refused (IntegrityError `block.unverified`) and nothing is stored.
   * Waits for a slot when `maxBlocksInFlight` requests are out.
   */
  async putBlock(cid: CID, frame: Uint8Array, size: number): Promise<"stored" | "duplicate"> {
    const { data, headers } = encodeIngestBlockRequest({ cid, frame, size });
    const reply = await this.#blockSlots.with(1, async () => {
      // A busy ingester (its intake budget is full) asks for a retry; the wait grows to 2 s.
      for (let attempt = 0; ; attempt++) {
        try {
          return await this.#call<Partial<IngestBlockReply> | null>(SUBJECTS.ingestBlock, data, headers);
        } catch (err) {
          if (!(err instanceof NixcasError && err.code === "ingest.busy") || attempt >= BUSY_RETRIES) throw err;
          await new Promise((r) => setTimeout(r, Math.min(2_000, 50 * 2 ** attempt)));
        }
      }
    });
    const result = reply?.result;
    if (result === "stored" || result === "duplicate") return result;
    throw new NixcasError("ingest.reply", `${SUBJECTS.ingestBlock}: unexpected reply ${JSON.stringify(reply).slice(0, 200)}`);
  }

  /** Resolves on `done` or `failed`, or with the last known state after `timeoutMs`. */
  waitFor(uploadId: string, timeoutMs: number): Promise<UploadStatus> {
    return this.#waitFor(uploadId, Date.now() + timeoutMs);
  }

  async #waitFor(uploadId: string, deadline: number): Promise<UploadStatus> {
    for (;;) {
      const waitMs = Math.max(0, Math.min(MAX_STATUS_WAIT_MS, deadline - Date.now()));
      const request: IngestStatusRequest = { uploadId, waitMs };
      let status: UploadStatus;
      try {
        status = await this.#call<UploadStatus>(SUBJECTS.ingestStatus, request);
      } catch (err) {
        // The upload was accepted (it is durable): a status that cannot be read during a NATS
        // leader change or reconnect is asked again until the deadline, not reported as a failure
        // (also "no status recorded": the ingester's watch of KV `uploads` can miss the record
        // while that bucket changes leader).
        const unreadable = isLeaderChange(err) || (err instanceof NixcasError && err.code === "upload.unknown");
        if (!unreadable || Date.now() >= deadline) throw err;
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      if (isTerminal(status.state) || Date.now() >= deadline) return status;
    }
  }

  #submitInline(meta: UploadMetadata, bytes: Uint8Array, compression: string): Promise<{ uploadId: string }> {
    const data = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
    const request: IngestNarRequest = { meta, nar: { kind: "inline", data, compression } };
    return this.#request(SUBJECTS.ingestNar, request);
  }

  async #stageAndSubmit(meta: UploadMetadata, source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>, compression: string): Promise<{ uploadId: string }> {
    const staging = this.#staging;
    if (staging === null) throw new NixcasError("ingest.no-staging", `NARs over ${INLINE_MAX_BYTES} bytes are staged in the object store first; this client was made without access to it`);
    const object = newStagingObjectName();
    await staging.put(object, source);
    try {
      return await this.submitStaged(meta, { object, compression });
    } catch (err) {
      // Refused (or no answer): nobody will ever read the object. Best effort; it also expires.
      await staging.delete(object).catch(() => {});
      throw err;
    }
  }

  async #request(subject: string, body: IngestNarRequest | IngestManifestRequest): Promise<{ uploadId: string }> {
    // "No responders" reached nobody, so sending again cannot enqueue twice: it is what an
    // ingester reconnecting after its NATS node died looks like for a moment (docs/nats-notes.md,
    // "Clustered NATS").
    const deadline = Date.now() + NO_RESPONDERS_RETRY_MS;
    let reply: unknown;
    for (;;) {
      try {
        reply = await this.#call<unknown>(subject, body);
        break;
      } catch (err) {
        const nobody = err instanceof NixcasError && err.code === "ingest.unavailable" && [...causes(err)].some((e) => e instanceof NixcasError && e.code === "service.unavailable");
        if (!nobody || Date.now() >= deadline) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    const uploadId = (reply as { uploadId?: unknown } | null)?.uploadId;
    if (typeof uploadId === "string") return { uploadId };
    throw new NixcasError("ingest.reply", `${subject}: unexpected reply ${JSON.stringify(reply).slice(0, 200)}`);
  }

  /** One request to the ingester; no answer at all is `ingest.unavailable` (its refusals keep their code and class). */
  async #call<T>(subject: string, body: unknown, headers?: MsgHdrs): Promise<T> {
    try {
      return await requestService<T>(this.#nc, subject, body, { timeoutMs: this.#timeoutMs, responder: "the ingester service", ...(headers ? { headers } : {}) });
    } catch (err) {
      if (err instanceof NixcasError && (err.code === "service.unavailable" || err.code === "service.request")) {
        throw new NixcasError("ingest.unavailable", err.message, { cause: err });
      }
      throw err;
    }
  }
}

async function* concatSources(head: Uint8Array[], rest: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  yield* head;
  yield* rest;
}

/** A client for every kind of upload, staging large NARs in the topology's object store. */
export function ingestClientFor(topology: Topology, options: IngestClientOptions = {}): IngestClient {
  return new IngestClient(topology.nc, { ...options, staging: new StagingStore(topology) });
}
