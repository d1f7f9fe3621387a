// `nixcas stats [--json]`: the tierer's view of the cache (docs/tiering.md): paths, blocks and
// bytes hot in BLOCKS, blocks, bytes and packs in the cold tier, paths past NIXCAS_COLD_AFTER.
// Exit status: 0, 1 when the tierer cannot be asked, 2 for usage.
import { requestService } from "../../shared/nats/service.ts";
import { TIER_SUBJECTS, type TierStats } from "../../shared/nats/tier-protocol.ts";
import { runNatsCommand } from "../nats-command.ts";
import { formatBytes } from "./tier.ts";

const USAGE = `usage: nixcas stats [--json]

  What the cache holds: paths, hot blocks (BLOCKS in JetStream) and cold blocks (packs in the
  cold tier), as the tierer counts them. --json prints one JSON object:
  {"paths","hot":{"blocks","bytes"},"cold":{"blocks","bytes","packs","packsUnsealed","store"},
   "access":{"tracked","coldPaths"},"pins","coldAfterMs"}

  Environment: NATS_URL (or a local \`nixcas up\`), NATS_CREDS, NATS_TOKEN.
`;

function parseArgs(argv: string[]): { json: boolean } | string {
  const unknown = argv.find((a) => a !== "--json");
  return unknown === undefined ? { json: argv.includes("--json") } : `unknown argument '${unknown}'`;
}

export async function run(argv: string[]): Promise<number> {
  return runNatsCommand(
    argv,
    { name: "stats", usage: USAGE, parseArgs, natsUrlMissing: "nixcas stats asks the cache's tierer over NATS; set NATS_URL to the cache's NATS server (e.g. nats://cache.example:4222)" },
    async ({ args, nc }) => {
      const stats = await requestService<TierStats>(nc, TIER_SUBJECTS.stats, {}, { timeoutMs: 120_000, responder: "the tierer service" });
      process.stdout.write(args.json ? JSON.stringify(stats) + "\n" : formatStats(stats));
      return 0;
    },
  );
}

export function formatStats(s: TierStats): string {
  const days = (ms: number) => (ms % 86_400_000 === 0 ? `${ms / 86_400_000}d` : `${Math.round(ms / 1000)}s`);
  return [
    `paths:  ${s.paths} (${s.access.coldPaths} not read for ${days(s.coldAfterMs)}; ${s.pins} pinned)`,
    `hot:    ${s.hot.blocks} blocks, ${formatBytes(s.hot.bytes)} in JetStream`,
    `cold:   ${s.cold.blocks} blocks in ${s.cold.packs} packs, ${formatBytes(s.cold.bytes)} in ${s.cold.store}${s.cold.packsUnsealed > 0 ? ` (+${s.cold.packsUnsealed} unsealed)` : ""}`,
  ].join("\n") + "\n";
}
