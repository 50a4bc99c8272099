"""The tf-text SavedModel on NSMC reviews: text tokenized in the graph against kobert's tokenizer feeding ids.

    python benchmarks/tf_text_bench.py [--limit 1000] [--runs 5] [--json FILE]

Exports the shipped default with `--to tf,tf-text` into a temporary folder, then runs the first
--limit NSMC test reviews in batches of 64 through plain TensorFlow + tensorflow-text:

- speed, median of --runs runs after one warm-up, side by side in one process: `serving_default`
  (text in, tokenized in the graph) against kobert's Python tokenizer + `serving_ids` (the same BERT
  fed ids); and tokenizing alone, the graph's `tokenize` against kobert's tokenizer;
- the ids, review by review: equal to kobert's tokenizer's, the same pieces in another order (exact
  score ties between two Viterbi implementations, docs/tokenizer.md), or other; equal to Python
  sentencepiece's with KoBERT's id rule; and the labels of the two paths;
- the two SavedModels' sizes on disk.

--json writes the result file the docs render (benchmarks/results/tf-text-bench.json: date, CPU,
command). Skips, saying so, without the NSMC file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BATCH = 64


def batches(texts: list[str]) -> list[list[str]]:
    return [texts[i:i + BATCH] for i in range(0, len(texts), BATCH)]


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def compare_ids(texts, graph_outputs, python_ids, sentencepiece, max_length: int) -> dict:
    """Per review: the graph's ids against kobert's tokenizer's and Python sentencepiece's (truncated alike)."""
    counts = {"ids_equal": 0, "same_pieces_other_order": 0, "other_difference": 0, "equal_to_sentencepiece": 0}
    for batch, outputs, want in zip(batches(texts), graph_outputs, python_ids):
        ids, mask = outputs["input_ids"].numpy(), outputs["attention_mask"].numpy()
        for row, text in enumerate(batch):
            mine = ids[row, :mask[row].sum()]
            ours = want["input_ids"][row, :want["attention_mask"][row].sum()]
            counts["equal_to_sentencepiece"] += int(mine[1:-1].tolist() == sentencepiece(text)[:max_length - 2])
            if np.array_equal(mine, ours):
                counts["ids_equal"] += 1
            elif sorted(mine) == sorted(ours):
                counts["same_pieces_other_order"] += 1
            else:
                counts["other_difference"] += 1
    return counts


def measure(export_dir: Path, texts: list[str], runs: int) -> dict:
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the SentencePiece ops the graph uses)

    from kobert import runtimes
    from kobert.bench import median_seconds

    model = tf.saved_model.load(str(export_dir / "tf-text"))
    text_signature, ids_signature = model.signatures["serving_default"], model.signatures["serving_ids"]
    with runtimes.load(export_dir, runtime="torch") as reference:  # kobert's Python tokenizer (its encode)
        python_ids = [reference.encode(batch) for batch in batches(texts)]

        def graph_path():
            return [text_signature(text=tf.constant(batch)) for batch in batches(texts)]

        def python_path():
            return [ids_signature(**{k: tf.constant(v) for k, v in reference.encode(batch).items()})
                    for batch in batches(texts)]

        seconds = {
            "text_in_the_graph": median_seconds(graph_path, runs, warmup=1),
            "python_tokenizer_then_serving_ids": median_seconds(python_path, runs, warmup=1),
            "tokenize_in_the_graph": median_seconds(
                lambda: [model.tokenize(tf.constant(batch)) for batch in batches(texts)], runs, warmup=1),
            "tokenize_in_python": median_seconds(
                lambda: [reference.encode(batch) for batch in batches(texts)], runs, warmup=1),
        }
        graph_outputs = graph_path()
        max_length = reference.text_encoder.max_length
    python_labels = np.concatenate([
        ids_signature(**{k: tf.constant(v) for k, v in ids.items()})["logits"].numpy().argmax(-1) for ids in python_ids])
    graph_labels = np.concatenate([outputs["logits"].numpy().argmax(-1) for outputs in graph_outputs])
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import python_sentencepiece  # the tests' independent reference: sentencepiece + the id rule

    sentencepiece = python_sentencepiece(export_dir / "tokenizer" / "tokenizer.model")
    return {"seconds": {k: round(v, 3) for k, v in seconds.items()},
            "ids": compare_ids(texts, graph_outputs, python_ids, sentencepiece, max_length),
            "labels_equal": int((graph_labels == python_labels).sum()),
            "savedmodel_mb": {name: round(folder_mb(export_dir / name), 1) for name in ("tf-text", "tf")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1000, help="the first N NSMC test reviews (default 1000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each path; the median is reported")
    parser.add_argument("--json", type=Path, default=None, help="write the result file the docs render")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]

    from kobert.datasets import default_nsmc_dir, read_nsmc
    from kobert.export import export

    nsmc = default_nsmc_dir() / "ratings_test.txt"
    if not nsmc.is_file():
        print(f"skipped: {nsmc} not found (set KOBERT_DATA_DIR or KOBERT_NSMC_DIR)")
        return 0
    texts = read_nsmc(nsmc, limit=args.limit).texts
    with tempfile.TemporaryDirectory(prefix="kobert-tf-text-") as tmp:
        export_dir = export("default", Path(tmp) / "export", targets="tf,tf-text").out
        result = {"reviews": len(texts), "batch_size": BATCH, "runs": args.runs, **measure(export_dir, texts, args.runs)}
    print(json.dumps(result, indent=2))
    if args.json:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from figures import stamp_here

        setting = f"the first {len(texts):,} NSMC test reviews, batches of {BATCH}, median of {args.runs} runs"
        args.json.write_text(json.dumps({**stamp_here(load_at_start, setting), **result}, indent=2) + "\n",
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
