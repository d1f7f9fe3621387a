// `nixcas chunk <file> [--min N --avg N --max N --normalization L --seed S]`: cuts a file with
// FastCDC as the chunker service would and prints one JSON line per chunk
// ({"offset":…,"length":…,"cid":"…"}). The file is streamed; sizes take a K/KiB/M/MiB suffix.
import { createReadStream } from "node:fs";
import { once } from "node:events";
import { parseArgs } from "node:util";
import { cidForBytes } from "../../shared/cid.ts";
import { ConfigError } from "../../shared/errors.ts";
import { DEFAULT_CHUNKER_OPTIONS, chunkStream, validateChunkerOptions, type ChunkerOptions } from "../../shared/fastcdc.ts";

const USAGE = `usage: nixcas chunk <file> [--min N] [--avg N] [--max N] [--normalization 0-3] [--seed N]
  sizes in bytes, or with a suffix: 16K, 16KiB, 1M, 1MiB (powers of 1024)
  defaults: --min ${DEFAULT_CHUNKER_OPTIONS.minSize} --avg ${DEFAULT_CHUNKER_OPTIONS.avgSize} --max ${DEFAULT_CHUNKER_OPTIONS.maxSize} --normalization 1 --seed 0
`;

const SUFFIXES: Record<string, number> = { "": 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2 };

/** A byte count: digits with an optional binary suffix. */
export function parseSize(text: string, flag: string): number {
  const match = /^(\d{1,10})([a-z]*)$/i.exec(text.trim());
  const factor = match ? SUFFIXES[match[2]!.toLowerCase()] : undefined;
  if (!match || factor === undefined) throw new ConfigError(`${flag} '${text}' is not a size (bytes, or a number with K, KiB, M or MiB)`);
  return Number(match[1]) * factor;
}

function parseInteger(text: string, flag: string): number {
  if (!/^\d{1,15}$/.test(text)) throw new ConfigError(`${flag} '${text}' is not a non-negative integer`);
  return Number(text);
}

export async function run(args: string[]): Promise<number> {
  let options: ChunkerOptions;
  let file: string;
  try {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        min: { type: "string" },
        avg: { type: "string" },
        max: { type: "string" },
        normalization: { type: "string" },
        seed: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
    if (values.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    if (positionals.length !== 1) throw new ConfigError(positionals.length === 0 ? "missing <file>" : `one file at a time, got ${positionals.length}`);
    file = positionals[0]!;
    options = validateChunkerOptions({
      minSize: values.min === undefined ? DEFAULT_CHUNKER_OPTIONS.minSize : parseSize(values.min, "--min"),
      avgSize: values.avg === undefined ? DEFAULT_CHUNKER_OPTIONS.avgSize : parseSize(values.avg, "--avg"),
      maxSize: values.max === undefined ? DEFAULT_CHUNKER_OPTIONS.maxSize : parseSize(values.max, "--max"),
      normalization: values.normalization === undefined ? 1 : parseInteger(values.normalization, "--normalization"),
      seed: values.seed === undefined ? 0 : parseInteger(values.seed, "--seed"),
    });
  } catch (err) {
    // parseArgs' own errors (unknown flag, missing value) are usage errors too.
    const message = err instanceof ConfigError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS") ? (err as Error).message : null;
    if (message === null) throw err;
    process.stderr.write(`nixcas chunk: ${message}\n${USAGE}`);
    return 2;
  }

  const input = createReadStream(file, { highWaterMark: 1024 * 1024 });
  let offset = 0;
  let lines = "";
  const flush = async () => {
    if (lines.length === 0) return;
    if (!process.stdout.write(lines)) await once(process.stdout, "drain");
    lines = "";
  };
  try {
    for await (const chunk of chunkStream(input as AsyncIterable<Uint8Array>, options)) {
      lines += `{"offset":${offset},"length":${chunk.length},"cid":"${cidForBytes(chunk).toString()}"}\n`;
      offset += chunk.length;
      if (lines.length >= 64 * 1024) await flush();
    }
    await flush();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ENOENT" || e.code === "EACCES" || e.code === "EISDIR") {
      process.stderr.write(`nixcas chunk: cannot read '${file}': ${e.message}\n`);
      return 1;
    }
    throw err;
  }
  return 0;
}
