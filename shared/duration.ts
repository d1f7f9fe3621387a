// Durations as operators write them: a whole number and a unit — `45d`, `12h`, `90m`, `30s`,
// `0s`. One parser for configuration (NIXCAS_COLD_AFTER, NIXCAS_GC_GRACE…) and command options
// (`--ttl`, `--retention`).

const DURATION = /^(0|[1-9][0-9]{0,6})([dhms])$/;
const UNIT_MS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1_000 } as const;

/** Milliseconds of `text`, or null when it is not `<whole number><d|h|m|s>`. */
export function parseDuration(text: string): number | null {
  const m = DURATION.exec(text.trim());
  if (!m) return null;
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

/** What `parseDuration` accepts, for error messages. */
export const DURATION_SYNTAX = "a whole number and d, h, m or s (e.g. 45d, 12h, 90m, 0s)";
