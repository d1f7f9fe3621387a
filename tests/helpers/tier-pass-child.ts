// A tiering pass in a child process that kills itself with SIGKILL right after one step
// (services/tierer/tiering-pass.ts TIER_STEPS), as a crash there would: for the crash tests of
// tests/integration/tiering.test.ts. Environment: NATS_URL, NATS_CREDS (the tierer's role),
// NIXCAS_COLD_DIR, KILL_AFTER (a step), LEASE_MS (short, so the next pass takes the lease over soon).
import { ColdBlocks } from "../../shared/cold/cold-blocks.ts";
import { DirColdStore } from "../../shared/cold/dir-cold-store.ts";
import { loadConfig } from "../../shared/config.ts";
import { silentLogger } from "../../shared/log.ts";
import { BlockStore } from "../../shared/nats/block-store.ts";
import { Catalog } from "../../shared/nats/catalog.ts";
import { connectNats } from "../../shared/nats/connect.ts";
import { openTopology } from "../../shared/nats/topology.ts";
import { runTieringPass, type TierStep } from "../../services/tierer/tiering-pass.ts";

const config = loadConfig();
const killAfter = process.env.KILL_AFTER as TierStep;
const nc = await connectNats({ servers: config.nats.servers!, name: "tier-pass-child", credsFile: config.nats.credsFile, token: null, logger: silentLogger });
const topology = await openTopology(nc);
const store = new DirColdStore(config.tiering.coldDir!);
const cold = new ColdBlocks(topology, store);
await runTieringPass(
  { topology, config, logger: silentLogger, blocks: new BlockStore(topology, { cold }), cold, store, catalog: new Catalog(topology), replica: "crash-child" },
  {
    coldAfterMs: 0,
    leaseMs: Number(process.env.LEASE_MS),
    onStep: (step) => {
      if (step === killAfter) process.kill(process.pid, "SIGKILL");
    },
  },
);
// Reached only when the step never came (nothing to pack): say so, the test fails on it.
process.stderr.write(`the pass ended without reaching step ${killAfter}\n`);
process.exit(3);
