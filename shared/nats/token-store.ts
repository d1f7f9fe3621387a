// KV `tokens` (token id → TokenRecord JSON, shared/tokens.ts): the HTTP tokens `nixcas token` and
// `nixcas up` create and revoke, and every gateway reads. Only records are stored — the sha256
// of a secret, never the secret — and nothing here logs a token.
//
// Revocation reaches every gateway within LOOKUP_CACHE_MS (+ one KV get): `lookup` keeps what it
// read for 1 s, then asks KV again. A KV watch would see a revocation sooner but is only as fresh
// as its subscription: after a reconnect, or while it re-syncs, it may serve a deleted record
// for as long as that takes, and it holds every record in every gateway. A short cache is stale
// for at most its age whatever the connection does; it costs one direct get per token in use
// per second per gateway.
import type { KV } from "@nats-io/kv";
import { NixcasError } from "../errors.ts";
import { decodeTokenRecord, encodeTokenRecord, generateToken, isTokenId, tokenIdOf, type Scope, type TokenRecord } from "../tokens.ts";
import { isWrongLastSequence } from "./jetstream-codes.ts";
import type { Topology } from "./topology.ts";

/** How long a looked-up record (or its absence) is believed: a revocation's worst-case delay. */
export const LOOKUP_CACHE_MS = 1_000;
/** Records (and absences) held at most; a flood of made-up ids cannot grow the cache beyond it. */
const LOOKUP_CACHE_ENTRIES = 10_000;

export interface NewToken {
  name: string | null;
  scopes: readonly Scope[];
  /** null: never expires. */
  expiresAt: Date | null;
  /** Its creation time (default: now), the base its expiry was computed from. */
  now?: Date;
}

export class TokenStore {
  readonly #kv: KV;
  readonly #cache = new Map<string, { at: number; record: Promise<TokenRecord | null> }>();

  constructor(topology: Pick<Topology, "kv">) {
    this.#kv = topology.kv.tokens;
  }

  /** Creates a token; returns the token (the only copy of its secret) and its record. */
  async create(options: NewToken): Promise<{ token: string; record: TokenRecord }> {
    // Ids are 48 random bits: a collision is unlikely, and create-only turns one into a retry
    // instead of an overwrite of another token's record.
    for (let attempt = 0; attempt < 3; attempt++) {
      const made = generateToken(options);
      try {
        await this.#kv.create(made.record.id, encodeTokenRecord(made.record));
        return made;
      } catch (err) {
        if (isWrongLastSequence(err)) continue;
        throw new NixcasError("token.store", `cannot write token ${made.record.id} to KV tokens: ${(err as Error).message}`, { cause: err });
      }
    }
    throw new NixcasError("token.store", "cannot create a token: three random ids in a row were taken");
  }

  /** Every token's record, oldest first. */
  async list(): Promise<TokenRecord[]> {
    const ids: string[] = [];
    try {
      for await (const key of await this.#kv.keys()) ids.push(key);
    } catch (err) {
      throw new NixcasError("token.store", `cannot list KV tokens: ${(err as Error).message}`, { cause: err });
    }
    const records: TokenRecord[] = [];
    for (const id of ids) {
      const record = await this.#read(id);
      if (record !== null) records.push(record);
    }
    return records.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  /** Deletes a token's record (named by the whole token or its id); returns it, or null when there was none. */
  async revoke(tokenOrId: string): Promise<TokenRecord | null> {
    const id = tokenIdOf(tokenOrId);
    const record = await this.#read(id);
    if (record === null) return null;
    try {
      await this.#kv.delete(id);
    } catch (err) {
      throw new NixcasError("token.store", `cannot delete KV tokens/${id}: ${(err as Error).message}`, { cause: err });
    }
    this.#cache.delete(id);
    return record;
  }

  /** The record of `id` as KV had it at most LOOKUP_CACHE_MS ago; null when there is none. */
  lookup(id: string, now = Date.now()): Promise<TokenRecord | null> {
    if (!isTokenId(id)) return Promise.resolve(null);
    const cached = this.#cache.get(id);
    if (cached !== undefined && now - cached.at < LOOKUP_CACHE_MS) return cached.record;
    if (this.#cache.size >= LOOKUP_CACHE_ENTRIES) this.#evictStale(now);
    // Concurrent requests with one token share the get; a failed get is not remembered.
    const record = this.#read(id);
    const entry = { at: now, record };
    this.#cache.set(id, entry);
    record.catch(() => {
      if (this.#cache.get(id) === entry) this.#cache.delete(id);
    });
    return record;
  }

  #evictStale(now: number): void {
    for (const [id, entry] of this.#cache) if (now - entry.at >= LOOKUP_CACHE_MS) this.#cache.delete(id);
    // All fresh (a burst of distinct ids within a second): drop the oldest half.
    if (this.#cache.size >= LOOKUP_CACHE_ENTRIES) {
      let drop = this.#cache.size / 2;
      for (const id of this.#cache.keys()) {
        if (drop-- <= 0) break;
        this.#cache.delete(id);
      }
    }
  }

  async #read(id: string): Promise<TokenRecord | null> {
    if (!isTokenId(id)) return null;
    let entry;
    try {
      entry = await this.#kv.get(id);
    } catch (err) {
      throw new NixcasError("token.store", `cannot read KV tokens/${id}: ${(err as Error).message}`, { cause: err });
    }
    if (entry === null || entry.operation !== "PUT") return null;
    return decodeTokenRecord(entry.value, id);
  }
}
