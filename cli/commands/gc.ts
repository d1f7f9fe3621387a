// `nixcas gc [--dry-run] [--retention D] [--json]`: asks the tierer for one garbage-collection
// pass now (docs/tiering.md, "Garbage collection and pins") and prints what it removed — or, with
// --dry-run, what it would remove. Exit status: 0 done, 1 failed or the mark was incomplete
// (nothing swept: the problems are printed), 2 for usage.
import { DURATION_SYNTAX, parseDuration } from "../../shared/duration.ts";
import { requestService } from "../../shared/nats/service.ts";
import { TIER_PASS_TIMEOUT_MS, TIER_SUBJECTS, type GcReply, type GcRequest } from "../../shared/nats/tier-protocol.ts";
import { runNatsCommand } from "../nats-command.ts";
import { natsUserLabel } from "../nats-user.ts";
import { formatBytes } from "./tier.ts";

const USAGE = `usage: nixcas gc [--dry-run] [--retention DURATION] [--json]

  Runs one mark-and-sweep pass in the tierer now: every block no cached path, listing or build
  log needs, and older than NIXCAS_GC_GRACE, is deleted from BLOCKS and from the cold tier
  (packs with nothing live are deleted, packs mostly garbage repacked).

  --dry-run         change nothing; report what would go
  --retention D     first delete paths neither pushed nor read for D (e.g. 90d), except pinned
                    paths and their closures and the closures of paths still in use
  --json            print the tierer's reply as one JSON object

  Environment: NATS_URL (or a local \`nixcas up\`), NATS_CREDS, NATS_TOKEN.
`;

interface Args {
  dryRun: boolean;
  retentionMs: number | null;
  json: boolean;
}

function parseArgs(argv: string[]): Args | string {
  const args: Args = { dryRun: false, retentionMs: null, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.startsWith("--") ? a.indexOf("=") : -1;
    const name = eq >= 0 ? a.slice(0, eq) : a;
    if (name === "--dry-run") args.dryRun = true;
    else if (name === "--json") args.json = true;
    else if (name === "--retention") {
      const ms = parseDuration((eq >= 0 ? a.slice(eq + 1) : argv[++i]) ?? "");
      if (ms === null) return `--retention takes ${DURATION_SYNTAX}`;
      args.retentionMs = ms;
    } else return `unknown argument '${a}'`;
  }
  return args;
}


export async function run(argv: string[]): Promise<number> {
  return runNatsCommand(
    argv,
    { name: "gc", usage: USAGE, parseArgs, natsUrlMissing: "nixcas gc asks the cache's tierer over NATS; set NATS_URL to the cache's NATS server (e.g. nats://cache.example:4222)" },
    async ({ args, config, nc }) => {
      const request: GcRequest = { dryRun: args.dryRun, retentionMs: args.retentionMs, by: await natsUserLabel(config.nats.credsFile) };
      const reply = await requestService<GcReply>(nc, TIER_SUBJECTS.gc, request, { timeoutMs: TIER_PASS_TIMEOUT_MS, responder: "the tierer service" });
      process.stdout.write(args.json ? JSON.stringify(reply) + "\n" : formatGc(reply));
      return reply.problems.length > 0 ? 1 : 0;
    },
  );
}

export function formatGc(r: GcReply): string {
  const verb = r.dryRun ? "would delete" : "deleted";
  const lines = [
    `${r.dryRun ? "dry run: nothing changed. " : ""}live: ${r.live.paths} paths, ${r.live.pins} pins, ${r.live.logs} build logs, ${r.live.markedBlocks} blocks`,
    `hot: ${r.hot.scanned} blocks scanned, ${verb} ${r.hot.swept} (${formatBytes(r.hot.sweptBytes)}), kept ${r.hot.keptYoung} unreferenced younger than ${r.graceCutoff}`,
    `cold: ${r.cold.records} records, ${verb} ${r.cold.swept}; packs ${verb}: ${r.cold.packsDeleted} (${formatBytes(r.cold.packsDeletedBytes)}), repacked: ${r.cold.packsRepacked}` +
      (r.cold.packsMostlyGarbageKept > 0 ? `, mostly garbage but kept (archived or unreadable): ${r.cold.packsMostlyGarbageKept}` : "") +
      (r.cold.orphanObjectsDeleted > 0 ? `, objects of interrupted passes: ${r.cold.orphanObjectsDeleted}` : ""),
    `NAR records no path uses: ${verb} ${r.narRecordsDeleted}`,
  ];
  if (r.retentionDeleted.length > 0 || r.retentionPinned > 0 || r.retentionReferenced > 0) {
    lines.push(`retention: ${verb} ${r.retentionDeleted.length} paths; kept by a pin: ${r.retentionPinned}, kept as references of paths in use: ${r.retentionReferenced}`);
    for (const p of r.retentionDeleted) lines.push(`  ${p}`);
  }
  if (r.problems.length > 0) {
    lines.push(`PROBLEMS (the mark is incomplete, so nothing was swept):`);
    for (const p of r.problems) lines.push(`  ${p}`);
  }
  return lines.join("\n") + "\n";
}
