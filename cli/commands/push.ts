// `nixcas push [--store S] [--no-closure] [--jobs N] [--json] <paths…>`: the NATS-native
// uploader. The closure comes from the real Nix; NARs are dumped, chunked, hashed and
// compressed here; only the blocks the cache lacks travel, then each path's manifest is
// submitted and its indexing awaited (cli/push/*). Progress and the summary go to stderr;
// with --json the summary is also printed on stdout as one JSON object.
// Exit status: 0 when every path is in the cache afterwards, 1 when any failed, 2 for usage.
import { ChunkWorkerPool } from "../../shared/node/chunk-pipeline.ts";
import { IngestClient } from "../../shared/nats/ingest-client.ts";
import { runNatsCommand } from "../nats-command.ts";
import { natsUserLabel } from "../nats-user.ts";
import { emptyTotals, formatSummary, Progress } from "../push/progress.ts";
import { push } from "../push/pusher.ts";

const USAGE = `usage: nixcas push [--store <dir|url>] [--no-closure] [--jobs N] [--wait-seconds N] [--json] <paths…>

  Pushes store paths and (unless --no-closure) their closure to the cache over NATS: NARs are
  chunked locally and only the chunks the cache lacks are uploaded.

  --store <dir|url>   the Nix store to read (a chroot directory or a Nix store URL), as nix --store
  --no-closure        push only the paths named, not what they reference
  --jobs N            paths chunked and uploaded at once (default 2)
  --wait-seconds N    give up on an upload whose state has not changed for N seconds (default 600)
  --json              also print the summary as JSON on stdout

  Environment: NATS_URL (required), NATS_CREDS, NATS_TOKEN, NIXCAS_STORE_DIR, NIXCAS_CHUNK_*,
  NIXCAS_ZSTD_LEVEL.
`;

interface Args {
  paths: string[];
  store?: string;
  closure: boolean;
  jobs: number;
  waitSeconds: number;
  json: boolean;
}

function parseArgs(argv: string[]): Args | string {
  const out: Args = { paths: [], closure: true, jobs: 2, waitSeconds: 600, json: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    const value = () => (eq >= 0 ? arg.slice(eq + 1) : argv[++i]);
    const positive = (v: string | undefined, max: number) => (v !== undefined && /^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= max ? Number(v) : null);
    if (name === "--") {
      out.paths.push(...argv.slice(i + 1));
      break;
    } else if (name === "--store") {
      const v = value();
      if (!v) return "--store needs a value";
      out.store = v;
    } else if (name === "--no-closure") out.closure = false;
    else if (name === "--json") out.json = true;
    else if (name === "--jobs" || name === "-j") {
      const n = positive(value(), 64);
      if (n === null) return "--jobs takes a number from 1 to 64";
      out.jobs = n;
    } else if (name === "--wait-seconds") {
      const n = positive(value(), 86_400);
      if (n === null) return "--wait-seconds takes a number from 1 to 86400";
      out.waitSeconds = n;
    } else if (arg.startsWith("-") && arg !== "-") return `unknown option '${arg}'`;
    else out.paths.push(arg);
  }
  if (out.paths.length === 0) return "no paths given";
  return out;
}

export async function run(argv: string[]): Promise<number> {
  return runNatsCommand(
    argv,
    { name: "push", usage: USAGE, parseArgs, natsUrlMissing: "nixcas push uploads over NATS; set NATS_URL to the cache's NATS server (e.g. nats://cache.example:4222)" },
    async ({ args, config, logger, nc }) => {
      const pool = new ChunkWorkerPool();
      const progress = new Progress(process.stderr, emptyTotals());
      try {
        await push({
          paths: args.paths,
          ...(args.store !== undefined ? { store: args.store } : {}),
          closure: args.closure,
          jobs: args.jobs,
          idleTimeoutMs: args.waitSeconds * 1000,
          uploader: await natsUserLabel(config.nats.credsFile),
          config,
          nc,
          ingest: new IngestClient(nc),
          pool,
          progress,
          logger,
        });
      } finally {
        progress.stop();
        await pool.close();
      }
      const totals = progress.totals;
      process.stderr.write(formatSummary(totals));
      if (args.json) process.stdout.write(JSON.stringify(totals) + "\n");
      return totals.failed > 0 ? 1 : 0;
    },
  );
}
