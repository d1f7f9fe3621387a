// A Docker engine for `npm run images` and `npm run test:deploy`: the Debian packages they run
// (docker.io, debootstrap, docker-compose) installed where missing, as scripts/ensure-system-deps.ts
// does for nats-server, and dockerd started when nothing answers on its socket (a machine
// without systemd, such as a CI container, does not start it on install).
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { openSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { NixcasError } from "../shared/errors.ts";

/** Debian package → a binary that proves it is installed. */
export const DOCKER_PACKAGES = {
  "docker.io": "dockerd",
  debootstrap: "debootstrap",
  "docker-compose": "docker-compose",
} as const;
export type DockerPackage = keyof typeof DOCKER_PACKAGES;

export function onPath(binary: string): boolean {
  for (const dir of (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/usr/bin", "/sbin"])) {
    if (dir && spawnSync("test", ["-x", `${dir}/${binary}`]).status === 0) return true;
  }
  return false;
}

/** Installs the packages whose binary is missing; throws with the command to run when it cannot. */
export function ensureDebianPackages(packages: DockerPackage[]): void {
  const missing = packages.filter((p) => !onPath(DOCKER_PACKAGES[p]));
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0 || !onPath("apt-get")) {
    throw new NixcasError(
      "images.packages-missing",
      `nixcas images need the Debian package(s) ${missing.join(" ")}, which are not installed.\n` +
        `Install them with:  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing.join(" ")}`,
    );
  }
  console.error(`images: installing ${missing.join(" ")} from Debian…`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit", env });
  execFileSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], { stdio: "inherit", env });
}

function engineAnswers(): boolean {
  return spawnSync("docker", ["version", "--format", "{{.Server.Version}}"], { stdio: "ignore" }).status === 0;
}

/**
 * Resolves once `docker` talks to an engine. Starts dockerd (detached, log in `logFile`) when
 * none answers and we are root; the engine outlives this process, like one started by systemd.
 */
export async function ensureDockerEngine(logFile = "/tmp/nixcas-dockerd.log"): Promise<void> {
  if (engineAnswers()) return;
  if (process.getuid?.() !== 0) {
    throw new NixcasError("images.engine-unavailable", "no Docker engine answers on /var/run/docker.sock, and only root can start dockerd: start it (sudo systemctl start docker)");
  }
  console.error(`images: starting dockerd (log: ${logFile})…`);
  const log = openSync(logFile, "a");
  spawn("dockerd", [], { detached: true, stdio: ["ignore", log, log] }).unref();
  // dockerd answers within seconds once it has set up its networks; 60 s covers a cold disk.
  for (let i = 0; i < 120; i++) {
    await sleep(500);
    if (engineAnswers()) return;
  }
  throw new NixcasError("images.engine-unavailable", `dockerd did not answer within 60 s: see ${logFile}`);
}
