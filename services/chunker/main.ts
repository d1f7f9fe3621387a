// The chunker as its own process (`node services/chunker/main.ts`, what `nixcas service chunker` runs).
import { runServiceProcess } from "../../shared/nats/service-process.ts";
import { SERVICES } from "../registry.ts";

await runServiceProcess("chunker", SERVICES.chunker);
