// kobert in JavaScript: texts -> kobert's token ids -> the fp32 ONNX model -> logits or embeddings.
//
// No DOM and no loading here, so the page (app.js, onnxruntime-web) and Node
// (onnxruntime-node) run the same code: the caller passes its `ort`, a
// transformers.js tokenizer made from the package's tokenizer.json, and the
// package's kobert-web.json.

// Texts per model call: a long list is run in slices, each padded to its own longest text.
const BATCH_SIZE = 32;

export class KoBert {
  /** @param {{ort: object, session: object, tokenizer: object, config: object}} parts */
  constructor({ ort, session, tokenizer, config }) {
    this.ort = ort;
    this.session = session;
    this.tokenizer = tokenizer;
    this.config = config;
    this.maxLength = config.max_length;
  }

  /** model: a URL (browser) or a file path (Node) of model.onnx. */
  static async create({ ort, tokenizer, config, model, sessionOptions = {} }) {
    const session = await ort.InferenceSession.create(model, { graphOptimizationLevel: "all", ...sessionOptions });
    return new KoBert({ ort, session, tokenizer, config });
  }

  /**
   * kobert's ids for one text: [CLS] + at most max_length - 2 pieces + [SEP].
   * transformers.js truncates after adding the specials, which cuts the final [SEP]
   * from texts over the limit; so the pieces are encoded alone, cut, then wrapped.
   */
  encodeOne(text) {
    if (typeof text !== "string") throw new TypeError(`expected a string, got ${typeof text}`);
    const pieces = this.tokenizer.encode(text, { add_special_tokens: false });
    const { cls, sep } = this.config.special_ids;
    return [cls, ...pieces.slice(0, this.maxLength - 2), sep];
  }

  /** Padded int64 feeds for a batch of id lists (right padding with [PAD], one token type). */
  feeds(idLists) {
    const width = Math.max(...idLists.map((ids) => ids.length));
    const size = idLists.length * width;
    const ids = new BigInt64Array(size).fill(BigInt(this.config.special_ids.pad));
    const mask = new BigInt64Array(size);
    idLists.forEach((row, r) => row.forEach((id, c) => {
      ids[r * width + c] = BigInt(id);
      mask[r * width + c] = 1n;
    }));
    const dims = [idLists.length, width];
    const tensor = (data) => new this.ort.Tensor("int64", data, dims);
    return { input_ids: tensor(ids), attention_mask: tensor(mask), token_type_ids: tensor(new BigInt64Array(size)) };
  }

  /**
   * texts -> {input_ids (per text, unpadded), logits + probabilities + labels | embeddings, ms}.
   * Classifiers give logits; encoders give the [CLS] vector of last_hidden_state
   * (kobert's `embed(pooling="cls")`).
   */
  async run(texts) {
    if (!Array.isArray(texts) || texts.length === 0) throw new TypeError("run(texts): expected a non-empty array of strings");
    const start = performance.now();
    const idLists = texts.map((text) => this.encodeOne(text));
    const rows = [];
    for (let first = 0; first < idLists.length; first += BATCH_SIZE) {
      rows.push(...await this.runBatch(idLists.slice(first, first + BATCH_SIZE)));
    }
    const result = { input_ids: idLists };
    if (this.config.head === "sequence_classification") {
      result.logits = rows;
      result.probabilities = rows.map(softmax);
      result.labels = result.probabilities.map((p) => this.config.labels[p.indexOf(Math.max(...p))]);
    } else {
      result.embeddings = rows;
    }
    result.ms = performance.now() - start;
    return result;
  }

  async runBatch(idLists) {
    const classifier = this.config.head === "sequence_classification";
    const name = classifier ? "logits" : "last_hidden_state";
    const output = (await this.session.run(this.feeds(idLists), [name]))[name];
    const [batch, ...rest] = output.dims;
    const data = Array.from(output.data);
    if (classifier) {
      const labels = rest[0];
      return Array.from({ length: batch }, (_, r) => data.slice(r * labels, (r + 1) * labels));
    }
    const [width, hidden] = rest;
    return Array.from({ length: batch }, (_, r) => data.slice(r * width * hidden, r * width * hidden + hidden));
  }
}

export function softmax(row) {
  const top = Math.max(...row);
  const exps = row.map((x) => Math.exp(x - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((x) => x / total);
}

/**
 * transformers.js reads the package's model/ folder (tokenizer.json, tokenizer_config.json), offline.
 * base: the package folder as a path (Node: a file path; browser: the path part of its URL).
 */
export async function loadTokenizer(transformers, base) {
  const { env, AutoTokenizer } = transformers;
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.useBrowserCache = false;
  env.localModelPath = base;
  return AutoTokenizer.from_pretrained("model");
}
