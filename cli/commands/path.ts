// `nixcas path info <path> [--json]` and `nixcas path delete <path>`: one store path in the
// cache, as the indexer (the owner of KV `paths`) knows it. `info` asks `nixcas.index.lookup`;
// `delete` sends `nixcas.index.admin.delete-path`, which NATS permissions allow only to the admin
// (and gateway) roles. A path is named by its store path, its base name or its hash part.
// Exit status: 0 done, 1 not in the cache (or refused), 2 for usage.
import { PermissionViolationError, type NatsConnection } from "@nats-io/nats-core";
import { NixcasError } from "../../shared/errors.ts";
import {
  INDEX_ADMIN_SUBJECTS,
  INDEX_QUERY_SUBJECTS,
  type DeletePathReply,
  type DeletePathRequest,
  type LookupRequest,
  type PathInfoJson,
} from "../../shared/nats/index-protocol.ts";
import { requestService } from "../../shared/nats/service.ts";
import { isValidHashPart, parseStorePath } from "../../shared/store-path.ts";
import { runNatsCommand } from "../nats-command.ts";
import { natsUserLabel } from "../nats-user.ts";

const USAGE = `usage: nixcas path info <store path|hash part> [--json]
       nixcas path delete <store path|hash part>

  info     what the cache records for the path: NAR hash and size, references, deriver,
           signatures, content address, who uploaded it and when, the served file's hash
           and size; --json prints the indexer's record as one JSON object
  delete   removes the path from the cache (needs admin NATS credentials), so that it can be
           uploaded again; its NAR and blocks stay until GC removes what nothing uses

  A path is its store path (/nix/store/<hash>-<name>), base name (<hash>-<name>) or hash part.
  Environment: NATS_URL (required), NATS_CREDS, NATS_TOKEN, NIXCAS_STORE_DIR.
`;

interface Args {
  action: "info" | "delete";
  /** As given; resolved against the store dir once the configuration is loaded. */
  path: string;
  json: boolean;
}

function parseArgs(argv: string[]): Args | string {
  const [action, ...rest] = argv;
  if (action !== "info" && action !== "delete") return action === undefined ? "no sub-command given" : `unknown sub-command '${action}'`;
  const json = rest.includes("--json");
  if (json && action !== "info") return "--json is an option of 'path info'";
  const positional = rest.filter((a) => a !== "--json");
  const option = positional.find((a) => a.startsWith("-"));
  if (option !== undefined) return `unknown option '${option}'`;
  if (positional.length !== 1) return positional.length === 0 ? "no store path given" : "one store path at a time";
  return { action, path: positional[0]!, json };
}

/** The hash part a store path, base name or hash part names; NixcasError when it names none. */
export function hashPartOf(path: string, storeDir: string): string {
  if (isValidHashPart(path)) return path;
  try {
    return parseStorePath(path.includes("/") ? path : `${storeDir}/${path}`, storeDir).hashPart;
  } catch (err) {
    throw new NixcasError("path.name", `${JSON.stringify(path)} is neither a store path in ${storeDir} nor a hash part (32 nix32 characters): ${(err as Error).message}`, { cause: err });
  }
}

const INDEXER = "the indexer service";

export async function run(argv: string[]): Promise<number> {
  return runNatsCommand(
    argv,
    { name: "path", usage: USAGE, parseArgs, natsUrlMissing: "nixcas path asks the cache's indexer over NATS; set NATS_URL to the cache's NATS server (e.g. nats://cache.example:4222)" },
    async ({ args, config, nc }) => {
      const hashPart = hashPartOf(args.path, config.storeDir);
      if (args.action === "info") {
        const info = await lookup(nc, hashPart);
        process.stdout.write(args.json ? JSON.stringify(info) + "\n" : formatPathInfo(info));
        return 0;
      }
      const request: DeletePathRequest = { hashPart, by: await natsUserLabel(config.nats.credsFile) };
      const removed = await requestService<DeletePathReply>(nc, INDEX_ADMIN_SUBJECTS.deletePath, request, { timeoutMs: 30_000, responder: INDEXER }).catch((err: unknown) => {
        if (!isPermissionViolation(err)) throw err;
        throw new NixcasError("path.forbidden", `deleting a path needs the admin NATS credentials (NATS_CREDS); these may not send ${INDEX_ADMIN_SUBJECTS.deletePath}`, { cause: err });
      });
      process.stdout.write(`deleted ${removed.storePath ?? `the damaged record of ${hashPart}`}\n`);
      return 0;
    },
  );
}

/** The server refused the request's publish: what the pusher role gets for an admin request. */
function isPermissionViolation(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) if (e instanceof PermissionViolationError) return true;
  return false;
}

async function lookup(nc: NatsConnection, hashPart: string): Promise<PathInfoJson> {
  const request: LookupRequest = { hashPart };
  return requestService<PathInfoJson>(nc, INDEX_QUERY_SUBJECTS.lookup, request, { timeoutMs: 30_000, responder: INDEXER });
}

/** The record for people: one `Field: value` line each, lists one item per line. */
export function formatPathInfo(info: PathInfoJson): string {
  const rows: Array<[string, string | string[]]> = [
    ["Store path", info.storePath],
    ["NAR hash", info.narHash],
    ["NAR size", String(info.narSize)],
    ["References", info.references],
    ["Deriver", info.deriver ?? "(none)"],
    ["CA", info.ca ?? "(none: input-addressed)"],
    ["Signatures", info.sigs],
    ["Uploader", info.uploader ?? "(unknown: not recorded)"],
    ["Added", new Date(info.registered).toISOString()],
    ["File hash", info.fileHash ?? "(not recorded)"],
    ["File size", info.fileSize === null ? "(not recorded)" : String(info.fileSize)],
    ["PathInfo", info.cid],
    ["Manifest", info.manifest],
    ["Listing", info.listing ?? "(none)"],
  ];
  const width = Math.max(...rows.map(([name]) => name.length)) + 2;
  const lines = rows.map(([name, value]) => {
    const label = `${name}:`.padEnd(width);
    if (!Array.isArray(value)) return label + value;
    if (value.length === 0) return label + "(none)";
    return value.map((v, i) => (i === 0 ? label : " ".repeat(width)) + v).join("\n");
  });
  return lines.join("\n") + "\n";
}
