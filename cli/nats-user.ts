// Who a command-line NATS client is, for the records it leaves (the uploader of a path it
// pushed, who deleted one): `nats <user>`, where <user> is the name in the user JWT of its
// creds file (`pusher:<label>` for creds `nixcas creds` issued), or just `nats` when there is
// none (token or no auth) or it cannot be read.
//
// Self-declared: the NATS server does not tell the ingester or indexer who sent a request, so
// whoever holds credentials that may send it can put any label in it. The label is for people
// reading the record, not proof; NATS permissions are what decide who may push or delete.
import { readFile } from "node:fs/promises";
import { fitUploaderLabel } from "../shared/path-info.ts";
import { describeCreds } from "../shared/nats/nats-auth.ts";

export async function natsUserLabel(credsFile: string | null | undefined): Promise<string> {
  if (!credsFile) return "nats";
  let name: string;
  try {
    name = describeCreds(await readFile(credsFile, "utf8")).name;
  } catch {
    // The connection already used the file; a label is not worth failing the command for.
    return "nats";
  }
  return name === "" ? "nats" : fitUploaderLabel(`nats ${name}`);
}
