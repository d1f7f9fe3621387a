// Command-line tools nixcas pipes data through when Node has no codec of its own (xz, bzip2,
// lzip, lz4): where they are on this machine. A tool that is not installed makes what needs it
// unsupported, with an error that says so, rather than failing at spawn time.
import { accessSync, constants as fsConstants } from "node:fs";
import { delimiter, join } from "node:path";

/** The executable `name` on PATH, or null (a few stat calls; callers decide whether to cache it). */
export function findTool(name: string): string | null {
  for (const dir of (process.env.PATH ?? "/usr/bin:/bin").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return null;
}
