// One `nixcas up` per data dir: two would run two nats-servers on one JetStream store, which
// corrupts it. The lock is a file created exclusively (O_EXCL) holding the owner's pid, its
// start time in the kernel's clock (so a pid reused by another process is not mistaken for the
// owner) and its host. A lock whose owner is gone (killed, crashed) is taken over.
import { readFileSync } from "node:fs";
import { readFile, unlink, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { NixcasError } from "../shared/errors.ts";
import type { Logger } from "../shared/log.ts";

export const LOCK_FILE_NAME = "nixcas-up.lock";

interface LockOwner {
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot); null where /proc is missing. */
  processStart: string | null;
  host: string;
  startedAt: string;
}

export interface DataDirLock {
  file: string;
  /** Removes the lock file (only if it is still ours). */
  release(): Promise<void>;
}

export async function lockDataDir(dir: string, logger: Logger): Promise<DataDirLock> {
  const file = join(dir, LOCK_FILE_NAME);
  const me: LockOwner = { pid: process.pid, processStart: processStartOf(process.pid), host: hostname(), startedAt: new Date().toISOString() };
  const text = JSON.stringify(me) + "\n";
  // Twice at most: once as found, once after taking over a stale lock.
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(file, text, { flag: "wx", mode: 0o644 });
      return {
        file,
        release: async () => {
          const current = await readFile(file, "utf8").catch(() => "");
          if (current === text) await unlink(file).catch(() => {});
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") {
        throw new NixcasError("up.lock", `cannot create the lock file ${file}: ${(err as Error).message}`, { cause: err });
      }
    }
    const found = await readFile(file, "utf8").catch(() => "");
    const owner = parseOwner(found);
    if (owner && ownerIsAlive(owner)) {
      const where = owner.host === me.host ? "" : ` on host ${owner.host}`;
      throw new NixcasError(
        "up.data-dir-locked",
        `the data dir ${dir} is in use by another nixcas up (pid ${owner.pid}${where}, started ${owner.startedAt}); ` +
          `stop that one first, or give this one its own NIXCAS_DATA_DIR (lock file: ${file})`,
      );
    }
    // The owner is gone. Remove the file only if it is still the stale one we read, so two
    // starters racing for it do not remove each other's fresh lock (a short window remains).
    if ((await readFile(file, "utf8").catch(() => "")) === found) await unlink(file).catch(() => {});
    logger.warn("took over the lock of a nixcas up that is gone", { file, previousOwner: owner ?? found.slice(0, 200) });
  }
  throw new NixcasError("up.data-dir-locked", `the data dir ${dir} was locked by another nixcas up starting at the same time (lock file: ${file})`);
}

function parseOwner(text: string): LockOwner | null {
  try {
    const v = JSON.parse(text) as Partial<LockOwner>;
    if (typeof v.pid !== "number" || !Number.isSafeInteger(v.pid) || v.pid <= 0) return null;
    return { pid: v.pid, processStart: typeof v.processStart === "string" ? v.processStart : null, host: String(v.host ?? ""), startedAt: String(v.startedAt ?? "?") };
  } catch {
    return null; // empty or torn: its writer died before finishing it
  }
}

function ownerIsAlive(owner: LockOwner): boolean {
  // Another host's process cannot be checked from here: assume it runs.
  if (owner.host !== hostname()) return true;
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
  }
  // Alive, or not ours to signal (EPERM). Same process only if it started when the owner did.
  const start = processStartOf(owner.pid);
  return owner.processStart === null || start === null || start === owner.processStart;
}

/** A process's start time (field 22 of /proc/<pid>/stat), or null without /proc. */
function processStartOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 2 (the command name) is in parentheses and may contain spaces: count after it.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}
