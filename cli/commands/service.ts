// `nixcas service <name>`: runs one service as its own process, exactly as
// `node services/<name>/main.ts` does (that is what the container image and k8s run).
import { runServiceProcess } from "../../shared/nats/service-process.ts";
import { SERVICE_NAMES, SERVICES, isServiceName } from "../../services/registry.ts";

export async function run(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (!name || rest.length > 0 || !isServiceName(name)) {
    process.stderr.write(`usage: nixcas service <${SERVICE_NAMES.join("|")}>\n`);
    return 2;
  }
  // runServiceProcess owns the process from here on (signals, exit code).
  await runServiceProcess(name, SERVICES[name]);
  return 0;
}
