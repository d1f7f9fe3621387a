// The cold tier as a directory, for one machine without S3 (`nixcas up` defaults to
// `<NIXCAS_DATA_DIR>/cold`). Key `packs/x.pack` is the file `<dir>/packs/x.pack`.
//
// Writes are atomic and durable before `put` returns: the tierer deletes the hot copies of a
// pack's blocks right after, so a crash must find either no file or the whole file — never a
// torn one under the final name. Hence write to `<dir>/.tmp/`, fsync, rename, fsync the
// directory. There is no archive class here: storage class "DIR", never archived.
import { randomUUID } from "node:crypto";
import { mkdir, open, opendir, rename, rm, stat } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import { checkColdKey, checkRange, missingError, shortRangeError } from "./cold-errors.ts";
import type { ColdObjectState, ColdStore } from "./cold-store.ts";

const TMP_DIR = ".tmp";

export class DirColdStore implements ColdStore {
  readonly description: string;
  readonly #root: string;

  constructor(root: string) {
    this.#root = root;
    this.description = `dir:${root}`;
  }

  async put(key: string, body: Uint8Array): Promise<void> {
    const path = this.#path(key);
    const tmpDir = join(this.#root, TMP_DIR);
    await mkdir(tmpDir, { recursive: true });
    await mkdir(dirname(path), { recursive: true });
    const tmp = join(tmpDir, `${randomUUID()}.part`);
    try {
      const file = await open(tmp, "wx");
      try {
        await file.writeFile(body);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    await syncDir(dirname(path));
  }

  async getRange(key: string, offset: number, length: number): Promise<Uint8Array> {
    checkRange(this.description, key, offset, length);
    const file = await this.#open(key);
    try {
      const out = new Uint8Array(length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await file.read(out, got, length - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      if (got !== length) throw shortRangeError(this.description, key, offset, length, got);
      return out;
    } finally {
      await file.close();
    }
  }

  async head(key: string): Promise<ColdObjectState | null> {
    try {
      const s = await stat(this.#path(key));
      return { bytes: s.size, storageClass: "DIR", archived: false, restore: "none" };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async restore(key: string): Promise<void> {
    // Nothing is ever archived here; only say when there is nothing to restore.
    if ((await this.head(key)) === null) throw missingError(this.description, key);
  }

  async delete(key: string): Promise<void> {
    await rm(this.#path(key), { force: true });
  }

  async *list(prefix: string): AsyncIterable<{ key: string; bytes: number }> {
    // Start at the deepest directory the prefix names; filter the rest by string prefix.
    const slash = prefix.lastIndexOf("/");
    const start = slash < 0 ? this.#root : join(this.#root, ...prefix.slice(0, slash).split("/"));
    for await (const path of walk(start)) {
      const key = relative(this.#root, path).split(sep).join("/");
      if (key.startsWith(`${TMP_DIR}/`) || !key.startsWith(prefix)) continue;
      const s = await stat(path).catch((err: unknown) => (isNotFound(err) ? null : Promise.reject(err)));
      if (s !== null) yield { key, bytes: s.size };
    }
  }

  #path(key: string): string {
    checkColdKey(key);
    return join(this.#root, ...key.split("/"));
  }

  async #open(key: string) {
    try {
      return await open(this.#path(key), "r");
    } catch (err) {
      if (isNotFound(err)) throw missingError(this.description, key, { cause: err });
      throw err;
    }
  }
}

async function* walk(dir: string): AsyncGenerator<string> {
  let entries;
  try {
    entries = await opendir(dir);
  } catch (err) {
    if (isNotFound(err) || (err as NodeJS.ErrnoException).code === "ENOTDIR") return;
    throw err;
  }
  const sorted: { name: string; isDir: boolean }[] = [];
  for await (const e of entries) sorted.push({ name: e.name, isDir: e.isDirectory() });
  sorted.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of sorted) {
    const path = join(dir, e.name);
    if (e.isDir) yield* walk(path);
    else yield path;
  }
}

/** fsync of a directory makes a rename in it durable (POSIX; a no-op error on some filesystems is ignored). */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync().catch(() => undefined);
  } finally {
    await handle.close();
  }
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | null)?.code === "ENOENT";
}
