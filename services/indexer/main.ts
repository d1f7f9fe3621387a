// The indexer as its own process (`node services/indexer/main.ts`, what `nixcas service indexer` runs).
import { runServiceProcess } from "../../shared/nats/service-process.ts";
import { SERVICES } from "../registry.ts";

await runServiceProcess("indexer", SERVICES.indexer);
