// Pins (docs/tiering.md, "Garbage collection and pins"): KV `pins`, key a store path's hash
// part, a PinRecord as JSON. A pin keeps the path and its closure through retention (GC never
// sweeps a block a path in the cache needs anyway; retention is what deletes paths). Written
// only by the tierer, on `nixcas pin add|rm` (TIER_SUBJECTS.pinAdd / pinRemove / pinList).
import { FormatError, IntegrityError, NixcasError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/log.ts";
import { uploaderProblem } from "../../shared/path-info.ts";
import { isValidHashPart } from "../../shared/store-path.ts";
import { Catalog } from "../../shared/nats/catalog.ts";
import { parseRequestObject } from "../../shared/nats/service.ts";
import { scanKv } from "../../shared/nats/stream-scan.ts";
import type { PinRecord, PinRequest } from "../../shared/nats/tier-protocol.ts";
import type { Topology } from "../../shared/nats/topology.ts";
import { checkKeys } from "../../shared/nats/work-items.ts";

export interface PinContext {
  topology: Topology;
  logger: Logger;
}

/** The body of a pin add / rm request, checked (FormatError `tier.request`). */
export function parsePinRequest(data: Uint8Array, subject: string): PinRequest {
  const request = parseRequestObject(data, subject, "tier.request");
  checkKeys(request, ["hashPart", "by"], subject, "tier.request");
  const { hashPart, by } = request;
  if (typeof hashPart !== "string" || !isValidHashPart(hashPart)) {
    throw new FormatError("tier.request", `${subject}: hashPart ${JSON.stringify(hashPart)} is not a store path hash part (32 nix32 characters)`);
  }
  const byProblem = uploaderProblem(by);
  if (byProblem !== null) throw new FormatError("tier.request", `${subject}: by ${byProblem}`);
  return { hashPart, by: by as string };
}

/** Pins a path the cache has (NixcasError `pin.not-found` otherwise); pinning again keeps the first record. */
export async function addPin(ctx: PinContext, request: PinRequest): Promise<PinRecord> {
  const existing = await readPin(ctx.topology, request.hashPart);
  if (existing !== null) return existing;
  const found = await new Catalog(ctx.topology).getPathInfo(request.hashPart);
  if (found === null) throw new NixcasError("pin.not-found", `no store path with hash part ${request.hashPart} is in the cache; only a cached path can be pinned`);
  const record: PinRecord = { hashPart: request.hashPart, storePath: found.info.storePath, pinnedAt: new Date().toISOString(), by: request.by };
  try {
    await ctx.topology.kv.pins.put(request.hashPart, new TextEncoder().encode(JSON.stringify(record)));
  } catch (err) {
    throw new NixcasError("pin.kv", `cannot write KV pins/${request.hashPart}: ${(err as Error).message}`, { cause: err });
  }
  ctx.logger.info("path pinned", { ...record });
  return record;
}

export async function removePin(ctx: PinContext, request: PinRequest): Promise<{ removed: boolean }> {
  if ((await readPin(ctx.topology, request.hashPart)) === null) return { removed: false };
  try {
    await ctx.topology.kv.pins.delete(request.hashPart);
  } catch (err) {
    throw new NixcasError("pin.kv", `cannot delete KV pins/${request.hashPart}: ${(err as Error).message}`, { cause: err });
  }
  ctx.logger.info("pin removed", { hashPart: request.hashPart, by: request.by });
  return { removed: true };
}

/** Every pin, by store path. */
export async function listPins(topology: Topology): Promise<PinRecord[]> {
  const pins: PinRecord[] = [];
  for await (const entry of scanKv(topology, "pins")) pins.push(decodePin(entry.key, entry.value));
  return pins.sort((a, b) => (a.storePath < b.storePath ? -1 : a.storePath > b.storePath ? 1 : 0));
}

async function readPin(topology: Topology, hashPart: string): Promise<PinRecord | null> {
  let entry;
  try {
    entry = await topology.kv.pins.get(hashPart);
  } catch (err) {
    throw new NixcasError("pin.kv", `cannot read KV pins/${hashPart}: ${(err as Error).message}`, { cause: err });
  }
  return entry === null || entry.operation !== "PUT" ? null : decodePin(hashPart, entry.value);
}

function decodePin(key: string, bytes: Uint8Array): PinRecord {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (err) {
    throw new IntegrityError("pin.corrupt", `KV pins/${key} is not JSON`, { cause: err });
  }
  const r = v as Partial<PinRecord> | null;
  if (typeof r !== "object" || r === null || r.hashPart !== key || typeof r.storePath !== "string" || typeof r.pinnedAt !== "string" || typeof r.by !== "string") {
    throw new IntegrityError("pin.corrupt", `KV pins/${key} is not a pin record of ${key}`);
  }
  return { hashPart: r.hashPart, storePath: r.storePath, pinnedAt: r.pinnedAt, by: r.by };
}
