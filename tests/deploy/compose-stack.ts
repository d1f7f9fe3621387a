// The repository's docker-compose.yml driven by docker-compose (1.29, Debian's) for
// tests/deploy: one compose project per test run, its secrets in a temp dir, the images of
// `npm run images`, the gateway on a free host port; and what a test needs to look inside: each
// container's health, and which NATS node leads a stream (the node's monitoring port, asked from
// inside its container, as nothing but the gateway is published).
import { execFile } from "node:child_process";
import { once } from "node:events";
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { formatSecretKey, formatPublicKey, generateSecretKey, publicKeyOf } from "../../shared/signing.ts";

const ROOT = join(import.meta.dirname, "..", "..");

export interface ComposeStack {
  project: string;
  /** The gateway, as clients outside the host's containers reach it. */
  url: string;
  /** The push token of the gateway's secret (NIXCAS_PUSH_TOKEN_FILE). */
  pushToken: string;
  /** Public key of the cache's signing key (secret cache.secret), for trusted-public-keys. */
  publicKey: string;
  compose(args: string[]): Promise<string>;
  /** `docker port` of a container: its published ports, one a line ("" for none). */
  publishedPorts(id: string): Promise<string>;
  /** Container id of each running container of a service. */
  containers(service: string): Promise<string[]>;
  /** Resolves once every long-running service's container is healthy; the one-shot jobs exited 0. */
  waitHealthy(deadlineMs: number): Promise<void>;
  /** The server name (nats-1…3, also the compose service) leading `stream`, asked of `via`. */
  streamLeader(stream: string, via: string): Promise<{ leader: string | null; messages: number }>;
  /** Saves the containers' logs (path printed), removes the stack, its volumes and secrets. */
  down(): Promise<void>;
}

/** Services that run until stopped (the image's or compose's healthcheck decides healthy). */
export const LONG_RUNNING = ["nats-1", "nats-2", "nats-3", "ingester", "chunker", "indexer", "tierer", "gateway"] as const;
const ONE_SHOT = ["s3-bucket", "setup"] as const;

function exec(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: ROOT, env, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(" ")} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

async function freePort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  server.close();
  return port;
}

/**
 * The secrets a user makes before `docker-compose up` (README, "Run the cluster with compose"):
 * NATS auth and per-role creds, the cache's signing key, a push token. Files readable by the
 * containers' users; the directories stay private to the host's root.
 */
async function makeSecrets(dir: string): Promise<{ authDir: string; secretsDir: string; pushToken: string; publicKey: string }> {
  const authDir = join(dir, "nats-auth");
  const secretsDir = join(dir, "secrets");
  await exec(process.execPath, [join(ROOT, "cli", "nixcas.ts"), "nats-auth", "init", "--out", authDir]);
  await mkdir(secretsDir, { recursive: true });
  const key = generateSecretKey("compose-test-1");
  const pushToken = `compose-${crypto.randomUUID()}`;
  await writeFile(join(secretsDir, "cache.secret"), formatSecretKey(key));
  await writeFile(join(secretsDir, "push-token"), `${pushToken}\n`);
  for (const file of (await readdir(join(authDir, "creds"))).map((f) => join(authDir, "creds", f)).concat([join(secretsDir, "cache.secret"), join(secretsDir, "push-token")])) {
    await chmod(file, 0o644);
  }
  return { authDir, secretsDir, pushToken, publicKey: formatPublicKey(publicKeyOf(key)) };
}

export async function startComposeStack(images: Record<string, string>): Promise<ComposeStack> {
  const dir = await mkdtemp(join(tmpdir(), "nixcas-compose-"));
  const { authDir, secretsDir, pushToken, publicKey } = await makeSecrets(dir);
  const port = await freePort();
  const project = `nixcasdeploy${process.pid}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...images,
    NIXCAS_NATS_AUTH_DIR: authDir,
    NIXCAS_SECRETS_DIR: secretsDir,
    NIXCAS_GATEWAY_PORT: String(port),
    // s3rver's one account; it has no lifecycle API, so setup leaves the bucket's rules alone.
    S3_ACCESS_KEY: "S3RVER",
    S3_SECRET_KEY: "S3RVER",
    NIXCAS_SETUP_S3_BUCKET: "",
  };
  const compose = (args: string[]) => exec("docker-compose", ["--project-name", project, "--file", join(ROOT, "docker-compose.yml"), ...args], env);
  const containers = async (service: string) => (await compose(["ps", "-q", service])).split("\n").filter(Boolean);
  const inspect = async (id: string) => {
    const [status, health, exitCode] = (await exec("docker", ["inspect", "--format", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.State.ExitCode}}", id])).trim().split(" ");
    return { status: status!, health: health!, exitCode: Number(exitCode) };
  };
  const stack: ComposeStack = {
    project,
    url: `http://127.0.0.1:${port}`,
    pushToken,
    publicKey,
    compose,
    containers,
    publishedPorts: async (id) => (await exec("docker", ["port", id])).trim(),
    async waitHealthy(deadlineMs) {
      const deadline = Date.now() + deadlineMs;
      let pending: string[] = [];
      while (Date.now() < deadline) {
        pending = [];
        for (const service of LONG_RUNNING) {
          const ids = await containers(service);
          const states = await Promise.all(ids.map(inspect));
          if (ids.length === 0 || states.some((s) => s.health !== "healthy")) pending.push(`${service}: ${states.map((s) => `${s.status}/${s.health}`).join(",") || "no container"}`);
        }
        for (const service of ONE_SHOT) {
          const states = await Promise.all((await containers(service)).map(inspect));
          if (states.length === 0 || states.some((s) => s.status !== "exited" || s.exitCode !== 0)) pending.push(`${service}: ${states.map((s) => `${s.status}/${s.exitCode}`).join(",") || "no container"}`);
        }
        if (pending.length === 0) return;
        await sleep(1000);
      }
      const logs = await compose(["logs", "--tail", "20"]).catch((err: Error) => err.message);
      throw new Error(`compose stack not healthy within ${deadlineMs / 1000} s: ${pending.join("; ")}\n${logs}`);
    },
    async streamLeader(stream, via) {
      const [id] = await containers(via);
      const jsz = JSON.parse(await exec("docker", ["exec", id!, "wget", "-q", "-O", "-", "http://127.0.0.1:8222/jsz?accounts=true&streams=true"])) as {
        account_details?: Array<{ stream_detail?: Array<{ name: string; cluster?: { leader?: string }; state: { messages: number } }> }>;
      };
      const detail = (jsz.account_details ?? []).flatMap((a) => a.stream_detail ?? []).find((s) => s.name === stream);
      return { leader: detail?.cluster?.leader ?? null, messages: detail?.state.messages ?? 0 };
    },
    async down() {
      // The containers' logs outlive them, for a failure to be understood afterwards.
      const logFile = join(tmpdir(), `${project}.log`);
      await writeFile(logFile, await compose(["logs", "--no-color", "--timestamps"]).catch((err: Error) => err.message));
      console.log(`# compose logs: ${logFile}`);
      await compose(["down", "--volumes", "--remove-orphans", "--timeout", "5"]);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return stack;
}
