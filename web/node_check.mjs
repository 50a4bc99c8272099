// Runs a kobert hf-onnx folder through transformers.js in Node, offline, and prints JSON.
//
//   node web/node_check.mjs REQUEST.json
//
// REQUEST: {"model_dir": ".../hf-onnx", "task": "text-classification" | "feature-extraction",
//           "dtype": "fp32" | "q8", "texts": [...], "repeats": 5}
// Prints: {"input_ids", "attention_mask", "outputs": {name: nested arrays}, "pipeline": what the
//          pipeline itself returns, "ms_per_call": the model call on the whole batch, median}
// The tokenizer and model are what transformers.js reads from the folder, nothing of kobert's.
import { readFileSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { env, pipeline } from "@huggingface/transformers";

const request = JSON.parse(readFileSync(process.argv[2], "utf-8"));
const folder = resolve(request.model_dir);
env.allowRemoteModels = false; // every file from the folder, nothing from a hub
env.localModelPath = dirname(folder) + "/";

const runner = await pipeline(request.task, basename(folder), { dtype: request.dtype ?? "fp32" });
const inputs = runner.tokenizer(request.texts, { padding: true, truncation: true });

const outputs = await runner.model(inputs);
const times = [];
for (let i = 0; i < (request.repeats ?? 5); i++) {
  const start = performance.now();
  await runner.model(inputs);
  times.push(performance.now() - start);
}
times.sort((a, b) => a - b);

const piped = request.task === "feature-extraction"
  ? (await runner(request.texts, { pooling: "none" })).tolist()
  : await runner(request.texts, { top_k: null });

const result = {
  input_ids: inputs.input_ids.tolist().map((row) => row.map(Number)),
  attention_mask: inputs.attention_mask.tolist().map((row) => row.map(Number)),
  outputs: Object.fromEntries(Object.entries(outputs)
    .filter(([, value]) => typeof value?.tolist === "function") // tensors only
    .map(([name, tensor]) => [name, tensor.tolist()])),
  pipeline: piped,
  ms_per_call: times.length ? times[Math.floor(times.length / 2)] : null,
};
process.stdout.write(JSON.stringify(result) + "\n");
