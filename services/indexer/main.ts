// Composition root of the indexer as its own process (`node services/indexer/main.ts`).
import { runServiceProcess } from "../../shared/nats/service-process.ts";
import { startIndexer } from "./indexer.ts";

await runServiceProcess("indexer", startIndexer);
