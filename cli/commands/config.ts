// `nixcas config`: checks the environment's configuration (exit 1 with every problem listed),
// or prints the variables as a Markdown table with `--markdown` (the README's table).
import { configMarkdown, loadConfig } from "../../shared/config.ts";

export async function run(args: string[]): Promise<number> {
  if (args.length === 1 && args[0] === "--markdown") {
    process.stdout.write(configMarkdown() + "\n");
    return 0;
  }
  if (args.length > 0) {
    process.stderr.write("usage: nixcas config [--markdown]\n");
    return 2;
  }
  process.stdout.write(JSON.stringify(loadConfig(), (k, v) => (k === "pushToken" || k === "token") && v ? "<set>" : v, 2) + "\n");
  return 0;
}
