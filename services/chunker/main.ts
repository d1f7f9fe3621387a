// Composition root of the chunker as its own process (`node services/chunker/main.ts`).
import { runServiceProcess } from "../../shared/nats/service-process.ts";
import { startChunker } from "./chunker.ts";

await runServiceProcess("chunker", startChunker);
