// Installs the system packages the project runs against, from Debian, where they are missing.
// Called by `npm test` (pretest) and `npm start` (prestart) so that both work on a fresh
// machine; on a machine where we cannot install (not root, no apt-get) it says exactly what to do.
import { execFileSync, spawnSync } from "node:child_process";

/** Debian package → a binary that proves it is installed. */
const PROBES: Record<string, string> = {
  "nats-server": "nats-server",
  "nix-bin": "nix-store",
};

function onPath(binary: string): boolean {
  for (const dir of (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/usr/bin"])) {
    if (dir && spawnSync("test", ["-x", `${dir}/${binary}`]).status === 0) return true;
  }
  return false;
}

// `name?` means: only needed when NATS_URL is unset (`npm start` runs a local nats-server then).
const wanted = process.argv
  .slice(2)
  .filter((arg) => !(arg.endsWith("?") && process.env.NATS_URL))
  .map((arg) => arg.replace(/\?$/, ""));
const unknown = wanted.filter((p) => !(p in PROBES));
if (unknown.length > 0) {
  console.error(`ensure-system-deps: unknown package(s) ${unknown.join(", ")}; known: ${Object.keys(PROBES).join(", ")}`);
  process.exit(2);
}
const missing = wanted.filter((p) => !onPath(PROBES[p]!));
if (missing.length === 0) process.exit(0);

const isRoot = process.getuid?.() === 0;
if (!isRoot || !onPath("apt-get")) {
  console.error(
    `nixcas needs the Debian package(s) ${missing.join(" ")}, which are not installed.\n` +
      `Install them with:  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing.join(" ")}`,
  );
  process.exit(1);
}
console.error(`ensure-system-deps: installing ${missing.join(" ")} from Debian…`);
const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit", env });
execFileSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...missing], { stdio: "inherit", env });
