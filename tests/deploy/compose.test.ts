// `npm run test:deploy`: the deployment as operators run it. Builds the images here
// (scripts/images.ts: no registry needed), brings up docker-compose.yml — 3 NATS nodes with
// JetStream and JWT auth, every stream at 3 replicas, s3rver as S3, the services in their own
// containers, only the gateway published — and drives it with the real Nix client from outside:
// a push with the push token (the gateway's secret), a second push during which the NATS node
// leading the BLOCKS stream is killed, and a pull of everything into an empty store with
// signatures required, while that node stays dead. Then tears the stack down.
// Prints the image build time, the stack's start time and the failover figures as diagnostics.
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { ensureDebianPackages } from "../../scripts/docker-engine.ts";
import { buildImages } from "../../scripts/images.ts";
import { STREAMS } from "../../shared/nats/topology.ts";
import { writeTree } from "../helpers/nar-trees.ts";
import { buildHelloWithDep, makeNixEnv, type NixEnv } from "../helpers/nix.ts";
import { LONG_RUNNING, startComposeStack, type ComposeStack } from "./compose-stack.ts";

const NATS_NODES = ["nats-1", "nats-2", "nats-3"] as const;

let stack: ComposeStack;
let uploader: NixEnv;
let fetcher: NixEnv;
let source: string;
let netrc: string;
const pushed: string[] = [];
let killed: string | null = null;

const seconds = (t0: number) => Math.round((performance.now() - t0) / 100) / 10;
const hashPartOf = (storePath: string) => storePath.slice("/nix/store/".length, "/nix/store/".length + 32);

before(async () => {
  ensureDebianPackages(["docker-compose"]);
  const t0 = performance.now();
  const built = await buildImages();
  console.log(`# images built in ${seconds(t0)} s on ${built.base}: ${JSON.stringify(built.seconds)}`);
  stack = await startComposeStack(built.images);
  const t1 = performance.now();
  await stack.compose(["up", "--detach", "--no-build"]);
  await stack.waitHealthy(300_000);
  console.log(`# compose stack up and healthy in ${seconds(t1)} s`);
  // Nix's own stall timeout (300 s; the helper's 20 s is for tests of one process): a narinfo PUT
  // is answered once its path is indexed, which a failover delays.
  uploader = await makeNixEnv("stalled-download-timeout = 300");
  fetcher = await makeNixEnv(`require-sigs = true\ntrusted-public-keys = ${stack.publicKey}\n`);
  source = uploader.store("src");
  netrc = join(uploader.dir, "netrc");
  await writeFile(netrc, `machine 127.0.0.1 login nixcas password ${stack.pushToken}\n`, { mode: 0o600 });
});

after(async () => {
  await stack?.down();
  await uploader?.cleanup();
  await fetcher?.cleanup();
});

/** A derivation output (with its dependency: a closure of two) and a tree with `mib` MiB of data. */
async function makePaths(tag: string, mib: number): Promise<string[]> {
  const work = join(uploader.dir, `work-${tag}`);
  await mkdir(work, { recursive: true });
  const tree = join(work, `tree-${tag}`);
  const files = Object.fromEntries(Array.from({ length: Math.ceil(mib / 8) }, (_, i) => [`part-${i}.bin`, { pseudoRandom: Math.min(8, mib - i * 8) * 1024 * 1024, seed: tag.length * 31 + i }]));
  await writeTree(tree, { dir: { README: `tree ${tag}\n`, data: { dir: files } } });
  const dir = (await uploader.run("nix-store", ["--store", source, "--add", tree])).trim();
  const out = await buildHelloWithDep(uploader, source, work, tag);
  return [dir, out];
}

function push(url: string, paths: string[]): Promise<string> {
  return uploader.run("nix", ["copy", "--store", source, "--to", url, "--option", "netrc-file", netrc, ...paths]);
}

test("every service is healthy; only the gateway is published", async () => {
  for (const service of LONG_RUNNING.filter((s) => s !== "gateway")) {
    for (const id of await stack.containers(service)) assert.equal(await stack.publishedPorts(id), "", `${service} publishes nothing`);
  }
  const [gateway] = await stack.containers("gateway");
  assert.match(await stack.publishedPorts(gateway!), new RegExp(`^8080/tcp -> [^\\n]*:${new URL(stack.url).port}$`, "m"));
  const ready = await fetch(`${stack.url}/readyz`);
  assert.equal(ready.status, 200, await ready.text());
});

test("an upload without the token is refused", async () => {
  const res = await fetch(`${stack.url}/${"0".repeat(32)}.narinfo`, { method: "PUT", body: "StorePath: x\n" });
  await res.arrayBuffer();
  assert.equal(res.status, 401);
});

test("push a closure with the real Nix client and the push token", async () => {
  const paths = await makePaths("first", 4);
  const t0 = performance.now();
  await push(stack.url, paths);
  console.log(`# first push (${paths.length} paths + closure, 4 MiB) in ${seconds(t0)} s`);
  for (const p of paths) {
    const res = await fetch(`${stack.url}/${hashPartOf(p)}.narinfo`);
    assert.equal(res.status, 200, `${p} is advertised`);
    assert.match(await res.text(), /^Sig: compose-test-1:/m);
  }
  pushed.push(...paths);
});

test("a second push survives the death of the NATS node leading BLOCKS", async () => {
  const paths = await makePaths("second", 48);
  const before = await stack.streamLeader(STREAMS.blocks, "nats-1");
  assert.ok(before.leader && (NATS_NODES as readonly string[]).includes(before.leader), `BLOCKS has a leader: ${JSON.stringify(before)}`);
  const leader = before.leader;
  const witness = NATS_NODES.find((n) => n !== leader)!;

  let done = false;
  const t0 = performance.now();
  const upload = push(`${stack.url}?compression=zstd`, paths).finally(() => (done = true));
  // Kill the leader once the second push's blocks arrive: in the middle of the upload.
  for (;;) {
    const now = await stack.streamLeader(STREAMS.blocks, witness);
    if (now.messages > before.messages || done) break;
    await sleep(200);
  }
  assert.equal(done, false, "the push was still running when its blocks started to arrive");
  const tKill = performance.now();
  await stack.compose(["kill", leader]);
  killed = leader;
  let newLeader: string | null = null;
  for (;;) {
    newLeader = (await stack.streamLeader(STREAMS.blocks, witness)).leader;
    if (newLeader && newLeader !== leader) break;
    await sleep(100);
  }
  console.log(`# killed ${leader} ${Math.round((tKill - t0) / 100) / 10} s into the push; ${newLeader} led BLOCKS ${seconds(tKill)} s after the kill`);
  await upload;
  console.log(`# the push finished ${seconds(tKill)} s after the kill (${seconds(t0)} s in all)`);
  for (const p of paths) {
    const res = await fetch(`${stack.url}/${hashPartOf(p)}.narinfo`);
    assert.equal(res.status, 200, `${p} is advertised after the failover`);
    await res.arrayBuffer();
  }
  pushed.push(...paths);
});

test("pull everything into an empty store with signatures required, one NATS node down", async () => {
  assert.ok(killed !== null && pushed.length === 4, "both pushes ran");
  const dst = fetcher.store("empty");
  const t0 = performance.now();
  await fetcher.run("nix", ["copy", "--from", stack.url, "--store", dst, ...pushed]);
  console.log(`# pulled ${pushed.length} paths + closure in ${seconds(t0)} s with ${killed} down`);
  await fetcher.run("nix", ["store", "verify", "--store", dst, "-r", ...pushed]);
  for (const p of pushed) {
    const mine = await uploader.runBuffer("nix-store", ["--dump", `${source}${p}`]);
    const theirs = await fetcher.runBuffer("nix-store", ["--dump", `${dst}${p}`]);
    assert.ok(mine.length > 0 && mine.equals(theirs), `${p}: same NAR on both sides`);
  }
});
