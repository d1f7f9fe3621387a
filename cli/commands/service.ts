// `nixcas service <name>`: runs one service as its own process, exactly as
// `node services/<name>/main.ts` does (that is what the container image and k8s run).
const SERVICES = ["ingester", "chunker", "indexer", "gateway"] as const;

export async function run(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (!name || rest.length > 0 || !(SERVICES as readonly string[]).includes(name)) {
    process.stderr.write(`usage: nixcas service <${SERVICES.join("|")}>\n`);
    return 2;
  }
  // The service's main.ts owns its lifecycle (signals, exit code).
  await import(`../../services/${name}/main.ts`);
  return 0;
}
