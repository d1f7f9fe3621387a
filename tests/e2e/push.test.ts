// `nixcas push` end to end: paths made by the real Nix in a chroot store (a tree with
// `nix-store --add`, a derivation output that references a `builtins.toFile` path), pushed by
// the real command as a child process over a test nats-server with the services in process,
// then fetched back through the gateway by the real Nix client into an empty store with only
// the cache's key trusted. Also: a second push uploads nothing; the same NAR under another
// name uploads no block; a slightly changed large path uploads a small fraction of its NAR;
// a path whose bytes no longer match the Nix database is refused (nothing advertised, no block
// stored) and a path referencing it is not submitted; --no-closure warns about the holes.
import assert from "node:assert/strict";
import { chmod, mkdir, open, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { startCluster, type Cluster } from "../helpers/cluster.ts";
import { http } from "../helpers/cache-http.ts";
import { pseudoRandomBytes, writeTree } from "../helpers/nar-trees.ts";
import { buildHelloWithDep, copyBackAndCompare, makeNixEnv, type NixEnv } from "../helpers/nix.ts";
import type { PushTotals } from "../../cli/push/progress.ts";
import { runNixcas } from "../helpers/up-process.ts";

const MiB = 1024 * 1024;

let cluster: Cluster;
let uploader: NixEnv;
let fetcher: NixEnv;
let source: string;
let work: string;

before(async () => {
  cluster = await startCluster({ env: { NIXCAS_LOG_LEVEL: "info" } });
  uploader = await makeNixEnv();
  fetcher = await makeNixEnv(`require-sigs = true\ntrusted-public-keys = ${cluster.publicKey}\n`);
  source = uploader.store("src");
  work = join(uploader.dir, "work");
  await mkdir(work, { recursive: true });
});

after(async () => {
  await cluster?.stop();
  await uploader?.cleanup();
  await fetcher?.cleanup();
});

interface PushRun {
  code: number | null;
  stdout: string;
  stderr: string;
  totals: PushTotals | null;
}

/** Runs `nixcas push` as a user would: a child process, stderr not a terminal. */
async function runPush(args: string[], env: NodeJS.ProcessEnv = { NATS_URL: cluster.nats.url }): Promise<PushRun> {
  const run = await runNixcas(["push", ...args], { ...uploader.env, NATS_URL: "", ...env }, 180_000);
  const last = run.stdout.trim().split("\n").pop();
  return { ...run, totals: last?.startsWith("{") ? (JSON.parse(last) as PushTotals) : null };
}

function ok(r: PushRun): PushTotals {
  assert.equal(r.code, 0, `push failed:\n${r.stderr}`);
  assert.ok(r.totals, `no JSON summary:\n${r.stdout}`);
  return r.totals;
}

const hashPartOf = (storePath: string) => storePath.slice("/nix/store/".length, "/nix/store/".length + 32);
const physical = (storePath: string) => join(source, storePath);

async function addTree(name: string, tree: Parameters<typeof writeTree>[1]): Promise<string> {
  const dir = join(work, name);
  await writeTree(dir, tree);
  return (await uploader.run("nix-store", ["--store", source, "--add", dir])).trim();
}

/** A derivation output that references a `builtins.toFile` path; returns both. */
async function buildWithDep(tag: string): Promise<{ out: string; dep: string }> {
  const out = await buildHelloWithDep(uploader, source, work, tag);
  const refs = (await uploader.run("nix-store", ["--store", source, "-q", "--references", out])).trim().split("\n");
  const dep = refs.find((r) => r.endsWith(`-dep-${tag}.txt`));
  assert.ok(dep, `the output references the dep: ${refs.join(" ")}`);
  return { out, dep };
}

/** Fetches paths from the gateway into a fresh store (signatures required) and checks them. */
async function fetchAndVerify(name: string, paths: string[]): Promise<string> {
  const dst = fetcher.store(name);
  await copyBackAndCompare({ fetcher, dst, cacheUrl: cluster.url, uploader, source, paths });
  return dst;
}

async function blockCount(): Promise<number> {
  return (await cluster.topology.jsm.streams.info("BLOCKS")).state.messages;
}

/** Overwrites bytes of a file in the chroot store (as a disk error or a careless edit would). */
async function corrupt(file: string, at: number, bytes: Uint8Array): Promise<void> {
  await chmod(file, 0o644);
  const fh = await open(file, "r+");
  try {
    await fh.write(bytes, 0, bytes.length, at);
  } finally {
    await fh.close();
  }
}

let tree: string;
let built: { out: string; dep: string };

describe("nixcas push", () => {
  test("usage errors and a missing NATS_URL are reported clearly", async () => {
    const none = await runPush([]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no paths given/);
    const unset = await runPush(["/nix/store/00000000000000000000000000000000-x"], { NATS_URL: "" });
    assert.equal(unset.code, 1);
    assert.match(unset.stderr, /NATS_URL is not set/);
    const absent = await runPush(["--store", source, "/nix/store/00000000000000000000000000000000-absent"]);
    assert.equal(absent.code, 1);
    assert.match(absent.stderr, /00000000000000000000000000000000-absent: not valid in the store|is not valid/);
  });

  test("a closure is pushed references first and fetched back by Nix with only the cache's key trusted", async () => {
    tree = await addTree("tree", {
      dir: {
        README: "a tree pushed by nixcas push\n",
        "big.bin": { pseudoRandom: 3 * MiB, seed: 11 },
        bin: { dir: { tool: { file: "#!/bin/sh\necho tool\n", executable: true } } },
        link: { symlink: "README" },
      },
    });
    built = await buildWithDep("a");
    const r = await runPush(["--store", source, "--json", built.out, tree]);
    const t = ok(r);
    assert.equal(t.paths, 3, "the output, its dependency and the tree");
    assert.equal(t.pushed, 3);
    assert.equal(t.skipped, 0);
    assert.equal(t.failed, 0);
    assert.ok(t.newChunks >= 3 && t.uploadedBytes > 3 * MiB * 0.9, JSON.stringify(t));
    // Not a terminal: one line per path, then the summary.
    for (const p of [built.out, built.dep, tree]) assert.match(r.stderr, new RegExp(`^pushed ${p}: NAR `, "m"));
    assert.ok(r.stderr.indexOf(`pushed ${built.dep}`) < r.stderr.indexOf(`pushed ${built.out}`), "the reference is done first");
    assert.match(r.stderr, /^nixcas push: 3 pushed, 0 already in the cache, 0 failed \(of 3 paths\)/m);
    for (const p of [built.out, built.dep, tree]) assert.equal((await http(`${cluster.url}/${hashPartOf(p)}.narinfo`)).status, 200, p);

    const dst = await fetchAndVerify("first", [built.out, tree]);
    const refs = (await fetcher.run("nix-store", ["--store", dst, "-q", "--references", built.out])).trim();
    assert.equal(refs, built.dep);
  });

  test("pushing again uploads nothing; the same NAR under another name uploads no new block", async () => {
    const again = ok(await runPush(["--store", source, "--json", built.out, tree]));
    assert.equal(again.pushed, 0);
    assert.equal(again.skipped, 3);
    assert.equal(again.newBlocks, 0);
    assert.equal(again.uploadedBytes, 0);

    // `nix-store --add` of an identical tree under another name: a new store path, same NAR.
    const twin = await addTree("twin", {
      dir: {
        README: "a tree pushed by nixcas push\n",
        "big.bin": { pseudoRandom: 3 * MiB, seed: 11 },
        bin: { dir: { tool: { file: "#!/bin/sh\necho tool\n", executable: true } } },
        link: { symlink: "README" },
      },
    });
    assert.notEqual(twin, tree);
    const before = await blockCount();
    const r = await runPush(["--store", source, "--json", twin]);
    const t = ok(r);
    assert.equal(t.pushed, 1);
    assert.equal(t.newBlocks, 0, "every chunk and the manifest are already stored");
    assert.equal(t.uploadedBytes, 0);
    assert.ok(t.dedupChunks >= 3);
    assert.match(r.stderr, /dedup ratio 100\.0%/);
    // The client stored nothing; the indexer adds the new path's PathInfo node, nothing else.
    assert.equal(await blockCount(), before + 1);
    await fetchAndVerify("twin", [twin]);
  });

  test("a slightly changed large path uploads a small fraction of its NAR", async (t) => {
    const data = pseudoRandomBytes(24 * MiB, 21);
    const v1 = await addTree("large-v1", { dir: { "data.bin": data, "VERSION": "1\n" } });
    const first = await runPush(["--store", source, "--json", v1]);
    const t1 = ok(first);
    assert.equal(t1.pushed, 1);
    const seconds = t1.elapsedMs / 1000;
    t.diagnostic(first.stderr.split("\n").find((l) => l.startsWith("pushed ")) ?? "");
    t.diagnostic(`v1: NAR ${(t1.narBytes / MiB).toFixed(1)} MiB pushed in ${seconds.toFixed(2)} s (${(t1.narBytes / 1e6 / seconds).toFixed(1)} MB/s end to end), uploaded ${(t1.uploadedBytes / MiB).toFixed(1)} MiB`);

    // Version 2: 64 bytes changed in the middle, one file added.
    data.set(new Uint8Array(64).fill(0x42), 12 * MiB + 1000);
    const v2 = await addTree("large-v2", { dir: { "data.bin": data, "VERSION": "2\n", "NEWS": "changed a little\n" } });
    const t2 = ok(await runPush(["--store", source, "--json", v2]));
    assert.equal(t2.pushed, 1);
    t.diagnostic(`v2: NAR ${(t2.narBytes / MiB).toFixed(1)} MiB, uploaded ${(t2.uploadedBytes / 1024).toFixed(0)} KiB in ${t2.newBlocks} blocks (${t2.newChunks} new chunks, ${t2.dedupChunks} deduplicated)`);
    assert.ok(t2.uploadedBytes < t2.narBytes / 20, `uploaded ${t2.uploadedBytes} of ${t2.narBytes}`);
    assert.ok(t2.newChunks <= 6, `new chunks: ${t2.newChunks}`);
    assert.ok(t2.dedupChunks > 100);
    await fetchAndVerify("large", [v2]);
  });

  test("a path whose bytes no longer match the Nix database is refused, and what references it is not submitted", async () => {
    // Same size, different bytes: the hash check catches it.
    const samesize = await addTree("corrupt-hash", { dir: { "data.bin": { pseudoRandom: 1 * MiB, seed: 31 }, note: "x\n" } });
    await corrupt(join(physical(samesize), "data.bin"), 4096, new Uint8Array([1, 2, 3, 4]));
    // Longer than recorded: caught by size.
    const longer = await addTree("corrupt-size", { dir: { note: "short\n" } });
    await corrupt(join(physical(longer), "note"), 6, new TextEncoder().encode(" and now longer\n"));
    // A dependency corrupted: the output that references it must not be submitted.
    const chain = await buildWithDep("b");
    await corrupt(physical(chain.dep), 0, new TextEncoder().encode("D"));

    const blocksBefore = await blockCount();
    const r = await runPush(["--store", source, "--json", samesize, longer, chain.out]);
    assert.equal(r.code, 1, r.stderr);
    const t = r.totals!;
    assert.equal(t.failed, 4, r.stderr);
    assert.equal(t.pushed, 0);
    const failure = (p: string) => t.failures.find((f) => f.storePath === p);
    assert.equal(failure(samesize)?.code, "push.nar-hash-mismatch");
    assert.match(failure(samesize)!.message, /hashes to sha256:[0-9a-z]{52}, but the Nix store records NarHash sha256:[0-9a-z]{52}: the local store is corrupt/);
    assert.equal(failure(longer)?.code, "push.nar-size-mismatch");
    assert.equal(failure(chain.dep)?.code, "push.nar-hash-mismatch");
    assert.equal(failure(chain.out)?.code, "push.reference-failed");
    assert.match(failure(chain.out)!.message, new RegExp(`its reference ${chain.dep} was not pushed`));
    assert.match(r.stderr, new RegExp(`^FAILED ${samesize}: .*the local store is corrupt`, "m"));
    assert.match(r.stderr, /^nixcas push: 0 pushed, 0 already in the cache, 4 failed \(of 4 paths\)/m);
    for (const p of [samesize, longer, chain.dep, chain.out]) assert.equal((await http(`${cluster.url}/${hashPartOf(p)}.narinfo`)).status, 404, p);
    // Small NARs are verified before any of their blocks is published. The output itself was
    // fine and had its blocks uploaded; only its manifest was held back.
    const stored = (await blockCount()) - blocksBefore;
    assert.ok(stored <= 2, `blocks stored: ${stored}`);
  });

  test("--no-closure pushes only the paths named and warns about references the cache lacks", async () => {
    const c = await buildWithDep("c");
    const r = await runPush(["--store", source, "--no-closure", "--jobs", "1", "--json", c.out]);
    const t = ok(r);
    assert.equal(t.paths, 1);
    assert.equal(t.pushed, 1);
    assert.match(r.stderr, new RegExp(`warning: 1 referenced path\\(s\\) are neither pushed .* ${c.dep.slice("/nix/store/".length)}`));
    assert.equal((await http(`${cluster.url}/${hashPartOf(c.dep)}.narinfo`)).status, 404);
    assert.equal((await http(`${cluster.url}/${hashPartOf(c.out)}.narinfo`)).status, 200);
  });
});
