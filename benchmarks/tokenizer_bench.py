"""Tokenizer throughput: documents/s on NSMC test (or generated text when shared data is absent).

    python benchmarks/tokenizer_bench.py [--runs 3] [--model PATH] [--json FILE]

Rows: our fast tokenizer (full BERT encoding: specials, token types, mask; batch),
raw sentencepiece.encode (ids only, one call per list), and transformers'
XLNetTokenizer on the same model file.  Median of --runs runs; ratios vs. sentencepiece.

Then where our time goes, each row removing one layer of the pipeline:
the Rust backend alone (no transformers wrapper, no Python dict building), without
offsets (`encode_batch_fast`), without our normaliser (wrong ids on some texts: for
timing only), and both tokenizers on one thread (`encode` per document does not
use tokenizers' thread pool).  --json writes both tables as the result file the docs render
(benchmarks/results/tokenizer-bench.json, with date, CPU and command).
"""

import argparse
import json
import os
import sys
from pathlib import Path

from tokenizers import Tokenizer

from kobert.bench import median_seconds
from kobert.datasets import data_dir

REPO = Path(__file__).resolve().parents[1]
SHARED = data_dir()


def load_documents():
    from kobert.datasets import read_nsmc

    nsmc = SHARED / "nsmc" / "ratings_test.txt"
    if nsmc.is_file():
        return "NSMC test", read_nsmc(nsmc).texts
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import generate_korean_documents

    return "generated", generate_korean_documents(50_000, seed=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", type=Path, default=SHARED / "reference_vocabs" / "kobert_tokenizer_78b3253a26.model")
    parser.add_argument("--json", type=Path, default=None, help="write the result file the docs' tables read")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]

    import sentencepiece as spm
    from transformers import XLNetTokenizer

    from kobert.tokenizer import get_tokenizer

    if not args.model.is_file():
        args.model = REPO / "kobert" / "assets" / "tokenizer" / "tokenizer.model"
    name, docs = load_documents()
    ours = get_tokenizer(args.model)
    sp = spm.SentencePieceProcessor(model_file=str(args.model))
    xlnet = XLNetTokenizer(vocab_file=str(args.model))
    rows = [
        ("kobert fast (BERT encoding, batch)", lambda: ours(docs)),
        ("sentencepiece.encode (ids only)", lambda: sp.encode(docs)),
        ("transformers XLNetTokenizer", lambda: xlnet(docs)),
    ]
    print(f"{len(docs):,} documents ({name}), model {args.model.name}, median of {args.runs} runs, "
          f"{os.cpu_count()} CPUs, RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'unset')}")
    results = [(label, median_seconds(fn, args.runs, warmup=0)) for label, fn in rows]
    base = len(docs) / results[1][1]
    print_table(results, len(docs), base)
    print("\nwhere the time goes (our pipeline, one layer removed per row):")
    profile = [(label, median_seconds(fn, args.runs, warmup=0)) for label, fn in profile_rows(ours, sp, docs)]
    print_table(profile, len(docs), base)
    if args.json:
        from figures import stamp_here

        record = {**stamp_here(load_at_start), "documents": f"{len(docs):,} {name} documents, median of {args.runs}",
                  **result_tables(results, profile, len(docs), base)}
        args.json.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


def profile_rows(ours, sp, docs):
    backend = ours.backend_tokenizer
    bare = Tokenizer.from_str(backend.to_str())
    bare.normalizer = None
    return [
        ("transformers wrapper (as above)", lambda: ours(docs)),
        ("Rust backend encode_batch", lambda: backend.encode_batch(docs)),
        ("Rust backend encode_batch_fast (no offsets)", lambda: backend.encode_batch_fast(docs)),
        ("  ... and no normaliser (timing only)", lambda: bare.encode_batch_fast(docs)),
        ("Rust backend, one document per call", lambda: [backend.encode(d) for d in docs]),
        ("sentencepiece, one thread", lambda: sp.encode(docs, num_threads=1)),
    ]


# What each pipeline row adds over the row below it (the last two rows are references, not layers).
STEP_COSTS = ["transformers builds Python lists and the `BatchEncoding`", "offsets",
              "our exact normaliser (NFKC, charsmap, NFC, guards)",
              "`tokenizers` itself: per-token strings, alignment vectors, `Encoding` objects",
              "no thread pool: compare `encode_batch`", "for comparison: ids only"]


def result_tables(results, profile, count, base) -> dict:
    """The two printed tables as the docs' result file holds them."""
    libraries = {label: {"docs_per_s": round(count / s), "x_sentencepiece": round(count / s / base, 2)}
                 for label, s in results}
    micro = [1e6 * s / count for _, s in profile]
    pipeline = {}
    for i, (label, seconds) in enumerate(profile):
        cost = STEP_COSTS[i]
        if i < 3:  # a layer of our pipeline: its cost is the time the next row no longer spends
            cost += f": {micro[i] - micro[i + 1]:.1f} µs"
        pipeline[label.strip()] = {"docs_per_s": round(count / seconds), "us_per_doc": round(micro[i], 1), "step_cost": cost}
    return {"libraries": libraries, "pipeline": pipeline}


def print_table(results, count, base):
    print(f"{'tokenizer':44s} {'docs/s':>10s} {'vs sentencepiece':>17s}")
    for label, seconds in results:
        rate = count / seconds
        print(f"{label:44s} {rate:10,.0f} {rate / base:16.2f}x")


if __name__ == "__main__":
    main()
