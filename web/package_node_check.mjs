// Runs a kobert web package in Node: its own kobert.js, with onnxruntime-node instead of onnxruntime-web.
//
//   node web/package_node_check.mjs REQUEST.json
//
// REQUEST: {"package_dir": "WEBDIR", "texts": [...], "repeats": 5}
// Prints {"result": what window.kobert.run gives in the page, "ms_per_call": median, "ort": version}.
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import * as ort from "onnxruntime-node";
import * as transformers from "@huggingface/transformers";

const request = JSON.parse(readFileSync(process.argv[2], "utf-8"));
const folder = resolve(request.package_dir);
const { KoBert, loadTokenizer } = await import(pathToFileURL(join(folder, "kobert.js")).href);

const config = JSON.parse(readFileSync(join(folder, "kobert-web.json"), "utf-8"));
const tokenizer = await loadTokenizer(transformers, folder + "/");
const model = await KoBert.create({ ort, tokenizer, config, model: join(folder, "model", "model.onnx") });

const result = await model.run(request.texts);
const times = [];
for (let i = 0; i < (request.repeats ?? 5); i++) times.push((await model.run(request.texts)).ms);
times.sort((a, b) => a - b);
process.stdout.write(JSON.stringify({
  result, ms_per_call: times.length ? times[Math.floor(times.length / 2)] : null,
  ort: JSON.parse(readFileSync(new URL(import.meta.resolve("onnxruntime-node/package.json")), "utf-8")).version,
}) + "\n");
