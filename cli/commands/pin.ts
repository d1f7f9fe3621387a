// `nixcas pin add|rm <store path|hash part>` and `nixcas pin ls [--json]`: pins keep a path and
// its closure through GC's retention (docs/tiering.md, "Garbage collection and pins"). Asked of
// the tierer, the only writer of KV `pins`. Exit status: 0 done, 1 failed (e.g. not cached;
// `rm` of a path not pinned), 2 for usage.
import { requestService } from "../../shared/nats/service.ts";
import { TIER_SUBJECTS, type PinRecord, type PinRequest } from "../../shared/nats/tier-protocol.ts";
import { runNatsCommand } from "../nats-command.ts";
import { natsUserLabel } from "../nats-user.ts";
import { hashPartOf } from "./path.ts";

const USAGE = `usage: nixcas pin add <store path|hash part>
       nixcas pin rm <store path|hash part>
       nixcas pin ls [--json]

  add   keep the path and its closure when \`nixcas gc --retention\` (or NIXCAS_RETENTION)
        deletes paths nobody used; the path must be in the cache
  rm    remove the pin (the path itself stays until retention deletes it)
  ls    every pin: store path, when and by whom

  A path is its store path (/nix/store/<hash>-<name>), base name or hash part.
  Environment: NATS_URL (or a local \`nixcas up\`), NATS_CREDS, NATS_TOKEN, NIXCAS_STORE_DIR.
`;

type Args = { action: "add" | "rm"; path: string } | { action: "ls"; json: boolean };

function parseArgs(argv: string[]): Args | string {
  const [action, ...rest] = argv;
  if (action === "ls") {
    const unknown = rest.find((a) => a !== "--json");
    return unknown === undefined ? { action, json: rest.includes("--json") } : `unknown argument '${unknown}'`;
  }
  if (action !== "add" && action !== "rm") return action === undefined ? "no sub-command given" : `unknown sub-command '${action}'`;
  const option = rest.find((a) => a.startsWith("-"));
  if (option !== undefined) return `unknown option '${option}'`;
  if (rest.length !== 1) return rest.length === 0 ? "no store path given" : "one store path at a time";
  return { action, path: rest[0]! };
}

const TIERER = "the tierer service";

export async function run(argv: string[]): Promise<number> {
  return runNatsCommand(
    argv,
    { name: "pin", usage: USAGE, parseArgs, natsUrlMissing: "nixcas pin asks the cache's tierer over NATS; set NATS_URL to the cache's NATS server (e.g. nats://cache.example:4222)" },
    async ({ args, config, nc }) => {
      if (args.action === "ls") {
        const pins = await requestService<PinRecord[]>(nc, TIER_SUBJECTS.pinList, {}, { responder: TIERER });
        process.stdout.write(args.json ? JSON.stringify(pins) + "\n" : pins.map((p) => `${p.storePath}  pinned ${p.pinnedAt} by ${p.by}\n`).join(""));
        return 0;
      }
      const request: PinRequest = { hashPart: hashPartOf(args.path, config.storeDir), by: await natsUserLabel(config.nats.credsFile) };
      if (args.action === "add") {
        const pin = await requestService<PinRecord>(nc, TIER_SUBJECTS.pinAdd, request, { responder: TIERER });
        process.stdout.write(`pinned ${pin.storePath} (since ${pin.pinnedAt}, by ${pin.by})\n`);
        return 0;
      }
      const { removed } = await requestService<{ removed: boolean }>(nc, TIER_SUBJECTS.pinRemove, request, { responder: TIERER });
      process.stdout.write(removed ? `unpinned ${args.path}\n` : `${args.path} was not pinned\n`);
      return removed ? 0 : 1;
    },
  );
}
