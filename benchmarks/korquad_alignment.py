"""KorQuAD EM/F1 with answers as tokens and as whole words: the alignment `kobert eval qa` chose.

    python benchmarks/korquad_alignment.py EXPORT_DIR [--runtime onnx] [--limit N] [--json FILE]

EXPORT_DIR is a question-answering export (`kobert finetune qa ...`, then `kobert export
RUN --to onnx --out EXPORT_DIR`). The held-out KorQuAD 1.0 articles that `kobert eval qa`
scores are answered once through one runtime with `align_to_words=False` (token offsets,
what `kobert eval qa` uses, kobert.evaluate.QA_ALIGN_TO_WORDS) and once with True (the
pipeline's default, what `kobert run --output answer` and `rt.answer` use), and both are
scored with KorQuAD's EM/F1. Also printed: how many answers differ between the two, and how
many word-aligned answers only add characters after the token answer (a particle: "세종대왕"
-> "세종대왕이").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from kobert import runtimes, tasks
from kobert.datasets import read_task
from kobert.metrics import korquad_scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--runtime", default="onnx")
    parser.add_argument("--data-dir", default=None, help="shared data folder (default: kobert's usual places)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N held-out questions")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    data = read_task("qa", "eval", args.data_dir, args.limit)
    truths = [[text for text, _ in e.answers] for e in data]
    rows = [(e.question, e.context) for e in data]
    results = {}
    with runtimes.load(args.export_dir, runtime=args.runtime) as rt:
        for align in (False, True):
            began = time.perf_counter()
            answers = [a for _, a in tasks.iter_answers(rt, rows, batch_size=args.batch_size, align_to_words=align)]
            results[align] = {"answers": answers, "seconds": time.perf_counter() - began,
                              **korquad_scores([a["answer"] for a in answers], truths)}
    tokens, words = results[False]["answers"], results[True]["answers"]
    differ = sum(t["answer"] != w["answer"] for t, w in zip(tokens, words))
    widened = sum(t["answer"] != w["answer"] and w["start"] == t["start"] and w["answer"].startswith(t["answer"])
                  for t, w in zip(tokens, words))
    print(f"KorQuAD 1.0 held-out articles, {len(data)} questions, runtime {args.runtime}")
    print("| align_to_words | EM | F1 | seconds |\n|---|---|---|---|")
    for align, r in results.items():
        note = " (kobert eval qa)" if not align else " (pipeline default, kobert run)"
        print(f"| {align}{note} | {r['exact_match']:.2f} | {r['f1']:.2f} | {r['seconds']:.0f} |")
    print(f"answers that differ: {differ}; of them the word answer only extends the token answer: {widened}")
    if args.json:
        summary = {str(a).lower(): {k: v for k, v in r.items() if k != "answers"} for a, r in results.items()}
        args.json.write_text(json.dumps({"questions": len(data), "runtime": args.runtime, "differ": differ,
                                         "widened": widened, "results": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
