// Crashes: the chunker killed (SIGKILL, as a separate process) in the middle of a large NAR,
// and the nats-server itself killed and restarted between chunking and indexing. Both uploads
// complete with the right bytes, and the path is never advertised while it is incomplete.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { getUploadStatus } from "../../shared/nats/uploads.ts";
import { STREAMS } from "../../shared/nats/topology.ts";
import { narFromTree } from "../helpers/nar-trees.ts";
import { hashPartOf, metaFor, readNar, startPipeline, until } from "../helpers/pipeline.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

test("chunker killed mid-NAR: a new chunker finishes the upload; paths never shows it early", async (t) => {
  const p = await startPipeline({ services: ["indexer", "ingester"] });
  t.after(() => p.stop());
  const files: Record<string, { pseudoRandom: number; seed: number }> = {};
  for (let i = 0; i < 24; i++) files[`f${i}`] = { pseudoRandom: 1 << 20, seed: 500 + i };
  const nar = narFromTree({ dir: files });
  const meta = metaFor(nar, "crash");
  const hashPart = hashPartOf(meta.storePath);

  // Every write to paths/<hashPart>, from the start: it must happen once, after the restart.
  const pathWrites: number[] = [];
  const watch = await p.topology.kv.paths.watch({ key: hashPart });
  t.after(() => watch.stop());
  void (async () => {
    for await (const e of watch) if (e.operation === "PUT") pathWrites.push(Date.now());
  })();

  // zstd level 19 makes the first chunker slow enough to be caught in the middle.
  const child = spawn(process.execPath, [`${ROOT}services/chunker/main.ts`], {
    cwd: ROOT,
    env: { ...process.env, NATS_URL: p.server.url, NIXCAS_ZSTD_LEVEL: "19", NIXCAS_ACK_WAIT_SECONDS: "5", NIXCAS_MAX_DELIVER: "3", NIXCAS_LOG_LEVEL: "error" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let childLog = "";
  child.stderr.on("data", (d: Buffer) => (childLog += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  t.after(() => {
    child.kill("SIGKILL");
  });

  const blocksBefore = await p.messages(STREAMS.blocks);
  const { uploadId } = await p.client.uploadNar(meta, nar);
  await until(
    "the child chunker to be mid-NAR",
    async () => (await getUploadStatus(p.topology, uploadId))?.state === "chunking" && (await p.messages(STREAMS.blocks)) - blocksBefore >= 20,
    60_000,
  );
  child.kill("SIGKILL");
  await exited;
  const storedByFirst = (await p.messages(STREAMS.blocks)) - blocksBefore;
  t.diagnostic(`killed the chunker after ${storedByFirst} blocks (NAR: ${(nar.length / 1048576).toFixed(0)} MiB, about ${Math.round(nar.length / 65536)} chunks)`);
  assert.ok(storedByFirst < nar.length / 65536 / 2, `killed in the middle (${storedByFirst} blocks stored)${childLog}`);
  assert.equal((await getUploadStatus(p.topology, uploadId))?.state, "chunking");
  assert.equal(await p.catalog.getPathInfo(hashPart), null);
  assert.equal(pathWrites.length, 0);

  const killedAt = Date.now();
  await p.start("chunker");
  const status = await p.client.waitFor(uploadId, 90_000);
  assert.equal(status.state, "done", JSON.stringify(status));
  const found = await p.catalog.getPathInfo(hashPart);
  assert.ok(found);
  assert.ok(Buffer.from(await readNar(p.blocks, found.info.manifest)).equals(Buffer.from(nar)), "the NAR reads back byte for byte");
  await until("the paths watch to see the write", () => pathWrites.length > 0, 5_000);
  assert.equal(pathWrites.length, 1);
  assert.ok(pathWrites[0]! > killedAt);
});

test("nats-server killed and restarted between chunking and indexing: the upload completes", async (t) => {
  const p = await startPipeline({ services: ["ingester", "chunker"] });
  t.after(() => p.stop());
  const nar = narFromTree({ dir: { a: { pseudoRandom: 2 << 20, seed: 77 }, b: "restart\n".repeat(10_000) } });
  const meta = metaFor(nar, "restart");
  const { uploadId } = await p.client.uploadNar(meta, nar);
  // `indexing` = the INDEX work item is stored; no indexer runs yet.
  await until("the chunker to hand the NAR to INDEX", async () => (await getUploadStatus(p.topology, uploadId))?.state === "indexing", 60_000);
  assert.equal(await p.messages(STREAMS.index), 1);

  await p.server.kill("SIGKILL");
  await p.server.restart();
  await until("the client to reconnect", async () => {
    try {
      await p.topology.jsm.streams.info(STREAMS.index);
      return true;
    } catch {
      return false;
    }
  }, 30_000, 200);
  assert.equal(await p.messages(STREAMS.index), 1, "the INDEX item survived the restart");

  await p.start("indexer");
  const status = await p.client.waitFor(uploadId, 60_000);
  assert.equal(status.state, "done", JSON.stringify(status));
  const found = await p.catalog.getPathInfo(hashPartOf(meta.storePath));
  assert.ok(found);
  assert.ok(Buffer.from(await readNar(p.blocks, found.info.manifest)).equals(Buffer.from(nar)));
});
