// The page: loads the package (kobert-web.json, model/, lib/) and exposes window.kobert.
//
//   await window.kobert.run(["텍스트", ...]) -> {input_ids, logits, probabilities, labels} | {input_ids, embeddings}
//
// window.kobert.ready turns true once the model is loaded; window.kobert.error holds
// the message if loading failed.
import * as ort from "./lib/ort/ort.wasm.min.mjs";
import * as transformers from "./lib/transformers/transformers.min.js";
import { KoBert, loadTokenizer } from "./kobert.js";

const api = (window.kobert = { ready: false, error: null, info: {} });
const $ = (id) => document.getElementById(id);

async function load() {
  const base = new URL("./", import.meta.url).href;
  const config = await (await fetch(new URL("kobert-web.json", base))).json();
  ort.env.wasm.wasmPaths = new URL("lib/ort/", base).href; // ours, never a CDN
  // transformers.js reads "local" files only from a path, not a full URL: this folder's path on the server.
  const tokenizer = await loadTokenizer(transformers, new URL("./", import.meta.url).pathname);
  const model = await KoBert.create({ ort, tokenizer, config, model: new URL("model/model.onnx", base).href,
                                      sessionOptions: { executionProviders: ["wasm"] } });
  Object.assign(api, {
    run: (texts) => model.run(texts),
    encode: (texts) => texts.map((text) => model.encodeOne(text)),
    config,
    info: { threads: ort.env.wasm.numThreads, crossOriginIsolated: self.crossOriginIsolated,
            versions: config.versions },
  });
  api.ready = true;
  return config;
}

function showModel(config) {
  const task = config.head === "sequence_classification" ? config.labels.join(" / ") : "sentence embeddings";
  $("model-info").textContent = `${config.layers} layers × ${config.hidden_size} · ${task}`;
  api.info.runtime = `onnxruntime-web ${config.versions["onnxruntime-web"]} (wasm, `
    + `${api.info.threads} thread${api.info.threads === 1 ? "" : "s"})`;
  $("status").textContent = `${api.info.runtime} · max ${config.max_length} tokens`;
  for (const element of [$("text"), $("run")]) element.disabled = false;
}

function showResult(config, result) {
  const box = $("result");
  box.replaceChildren();
  if (result.probabilities) {
    const probabilities = result.probabilities[0];
    const top = probabilities.indexOf(Math.max(...probabilities));
    box.append(element("div", { id: "prediction" }, result.labels[0]));
    config.labels.forEach((label, i) => {
      const bar = element("div", { class: "bar" });
      const fill = element("div", { class: i === top ? "fill top" : "fill" });
      fill.style.width = `${(100 * probabilities[i]).toFixed(1)}%`;
      bar.append(element("span", {}, label), element("div", { class: "track" }, fill),
                 element("span", { class: "value" }, `${(100 * probabilities[i]).toFixed(1)} %`));
      box.append(bar);
    });
  } else {
    const vector = result.embeddings[0];
    const norm = Math.sqrt(vector.reduce((sum, x) => sum + x * x, 0));
    box.append(element("div", { id: "prediction" }, `[CLS] vector, ${vector.length} dims, norm ${norm.toFixed(3)}`),
               element("code", {}, vector.slice(0, 8).map((x) => x.toFixed(4)).join("  ") + "  …"));
  }
  $("status").textContent = `${result.input_ids[0].length} tokens · ${result.ms.toFixed(1)} ms · ${api.info.runtime}`;
}

function element(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

load().then((config) => {
  showModel(config);
  const analyse = async () => {
    const text = $("text").value.trim();
    if (!text) return;
    $("run").disabled = true;
    try {
      showResult(config, await api.run([text]));
    } finally {
      $("run").disabled = false;
    }
  };
  $("run").addEventListener("click", analyse);
  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) analyse();
  });
}).catch((error) => {
  api.error = String(error?.stack ?? error);
  $("status").textContent = `could not load the model: ${error?.message ?? error}`;
});
