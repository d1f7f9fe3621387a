// Three nats-server processes forming one JetStream cluster, for a test file: the deployment's
// own files (deploy/nats/nats-cluster.conf including nats.conf, with the auth.conf of `nixcas
// nats-auth init`), each node in its own directory with its own store dir, on free ports.
// Only what cannot be the same on one machine is rewritten: the store dir, the route host
// names (127.0.0.1 and this run's cluster ports) and the cluster listen address; the client
// and monitoring ports come from the command line. `kill()` crashes a node (SIGKILL);
// `restart()` brings it back with the same name, ports and store, so it rejoins its Raft groups.
import type { ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { launchNatsServer, type NatsServerProcess } from "../../shared/nats/local-server.ts";
import { ensureNatsAuthDir, type NatsAuthDir } from "../../shared/nats/nats-auth-dir.ts";
import { NATS_SERVER_BINARY } from "./nats-server.ts";

const DEPLOY_DIR = new URL("../../deploy/nats/", import.meta.url).pathname;

export interface NatsClusterNode {
  /** server_name, also the compose/k8s host name the file routes to: nats-1, nats-2, nats-3. */
  name: string;
  url: string;
  port: number;
  clusterPort: number;
  monitorPort: number;
  storeDir: string;
  running(): boolean;
  /** A crash: SIGKILL, nothing flushed. */
  kill(): Promise<void>;
  /** Starts the node again (same name, ports and store dir). */
  restart(): Promise<void>;
  log(): string;
}

export interface NatsCluster {
  nodes: NatsClusterNode[];
  /** Every node's client URL: what a client must be given to fail over. */
  urls: string[];
  auth: NatsAuthDir;
  node(name: string): NatsClusterNode;
  /** Waits until the running nodes agree on a meta leader that sees every running node as current; its name. */
  waitForMetaLeader(timeoutMs?: number): Promise<string>;
  stop(): Promise<void>;
}

/** The part of the monitoring endpoint /jsz this helper reads. */
interface Jsz {
  meta_cluster?: { leader?: string; cluster_size?: number; replicas?: Array<{ name: string; current: boolean; offline?: boolean }> };
}

const running = new Set<ChildProcess>();
const tempDirs = new Set<string>();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

export async function startNatsCluster(size = 3): Promise<NatsCluster> {
  const root = await mkdtemp(join(tmpdir(), "nixcas-nats-cluster-"));
  tempDirs.add(root);
  const auth = await ensureNatsAuthDir(join(root, "nats-auth"));
  const names = Array.from({ length: size }, (_, i) => `nats-${i + 1}`);
  const clusterPorts = await freePorts(size);
  const monitorPorts = await freePorts(size);
  const deployConf = await readFile(join(DEPLOY_DIR, "nats.conf"), "utf8");
  let clusterConf = await readFile(join(DEPLOY_DIR, "nats-cluster.conf"), "utf8");
  names.forEach((name, i) => {
    clusterConf = rewrite(clusterConf, `${name}:6222`, `127.0.0.1:${clusterPorts[i]}`);
  });
  const nodes: NatsClusterNode[] = [];
  for (const [i, name] of names.entries()) {
    const dir = join(root, name);
    await mkdir(dir);
    const storeDir = join(dir, "jetstream");
    await writeFile(join(dir, "nats.conf"), rewrite(deployConf, "store_dir: /data/jetstream", `store_dir: "${storeDir}"`));
    await writeFile(join(dir, "nats-cluster.conf"), rewrite(clusterConf, "listen: 0.0.0.0:6222", `listen: 127.0.0.1:${clusterPorts[i]}`));
    await copyFile(auth.authConfFile, join(dir, "auth.conf"));
    nodes.push(await startNode({ name, dir, storeDir, clusterPort: clusterPorts[i]!, monitorPort: monitorPorts[i]! }));
  }
  const cluster: NatsCluster = {
    nodes,
    urls: nodes.map((n) => n.url),
    auth,
    node: (name) => {
      const found = nodes.find((n) => n.name === name);
      if (!found) throw new Error(`no node ${name} in this cluster (${names.join(", ")})`);
      return found;
    },
    async waitForMetaLeader(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const leader = await agreedMetaLeader(nodes.filter((n) => n.running()));
        if (leader !== null) return leader;
        if (Date.now() > deadline) throw new Error(`no JetStream meta leader with every running node current within ${timeoutMs} ms\n${nodes.map((n) => `--- ${n.name}\n${n.log().slice(-2000)}`).join("\n")}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.kill()));
      await rm(root, { recursive: true, force: true });
      tempDirs.delete(root);
    },
  };
  await cluster.waitForMetaLeader();
  return cluster;
}

async function startNode(spec: { name: string; dir: string; storeDir: string; clusterPort: number; monitorPort: number }): Promise<NatsClusterNode> {
  let port = -1;
  let current: NatsServerProcess | null = null;
  let earlierLogs = "";
  const launch = async () => {
    const proc = await launchNatsServer({
      binary: NATS_SERVER_BINARY,
      storeDir: null, // the file's store_dir
      port,
      args: ["-c", join(spec.dir, "nats-cluster.conf"), "-m", String(spec.monitorPort)],
      env: { ...process.env, SERVER_NAME: spec.name },
    });
    current = proc;
    port = proc.port;
    running.add(proc.child);
    proc.child.once("exit", () => running.delete(proc.child));
  };
  await launch();
  const node: NatsClusterNode = {
    name: spec.name,
    url: `nats://127.0.0.1:${port}`,
    port,
    clusterPort: spec.clusterPort,
    monitorPort: spec.monitorPort,
    storeDir: spec.storeDir,
    running: () => current !== null,
    async kill() {
      const proc = current;
      current = null;
      if (!proc) return;
      earlierLogs += proc.log();
      await proc.terminate("SIGKILL", 0);
    },
    async restart() {
      await node.kill();
      await launch();
    },
    log: () => earlierLogs + (current?.log() ?? ""),
  };
  return node;
}

/** The meta leader when every running node names the same one and it sees all of them current; else null. */
async function agreedMetaLeader(nodes: NatsClusterNode[]): Promise<string | null> {
  const views = await Promise.all(nodes.map((n) => jsz(n)));
  const leader = views[0]?.meta_cluster?.leader;
  if (!leader || views.some((v) => v?.meta_cluster?.leader !== leader)) return null;
  const leaderView = views[nodes.findIndex((n) => n.name === leader)];
  if (!leaderView) return null;
  const current = (leaderView.meta_cluster?.replicas ?? []).filter((r) => r.current && !r.offline).map((r) => r.name);
  return nodes.every((n) => n.name === leader || current.includes(n.name)) ? leader : null;
}

async function jsz(node: NatsClusterNode): Promise<Jsz | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${node.monitorPort}/jsz`, { signal: AbortSignal.timeout(2_000) });
    return res.ok ? ((await res.json()) as Jsz) : null;
  } catch {
    return null;
  }
}

/** Ports free right now (the OS picks them; a tiny race with other processes is accepted). */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
      const s = createServer();
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** `text` with `from` replaced; throws when the deploy file no longer contains it (the test would silently test something else). */
function rewrite(text: string, from: string, to: string): string {
  if (!text.includes(from)) throw new Error(`the deploy config no longer contains ${JSON.stringify(from)}: update tests/helpers/nats-cluster.ts`);
  return text.split(from).join(to);
}
