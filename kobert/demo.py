"""`kobert demo`, the main job: the shipped default through every framework, offline.

1. tokenise a few Korean reviews with the shipped tokenizer;
2. export the shipped default model (a small KoBERT fine-tuned on NSMC,
   kobert/assets/model/CARD.md) to TF, ONNX, tf2onnx-ONNX and MXNet, checking parity;
3. classify the reviews through all runtimes and print one table.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kobert.checkpoint import shipped

REVIEWS = [
    "이 영화 정말 재밌어요 ㅋㅋㅋ 강추!!",
    "스토리가 너무 지루하고 연기도 별로였다....",
    "배우들의 연기가 훌륭했지만 결말이 아쉬웠습니다.",
    "시간 낭비였다. 최악의 영화",
    "올해 본 영화 중 최고였다",
]


def run_demo(out: str | Path = "artifacts/default") -> int:
    from kobert import runtimes
    from kobert.evaluate import runs
    from kobert.export import export
    from kobert.tokenizer import get_tokenizer

    tokenizer_dir = shipped("tokenizer")
    tokenizer = get_tokenizer(tokenizer_dir)
    print("== 1. tokenizer (shipped default)")
    for text in REVIEWS[:2]:
        ids = tokenizer(text)["input_ids"]
        print(json.dumps({"text": text, "tokens": tokenizer.convert_ids_to_tokens(ids), "input_ids": ids}, ensure_ascii=False))

    print("\n== 2. export + parity: the shipped default model (kobert/assets/model, see its CARD.md)")
    # The model folder carries its own tokenizer files, which know the length it was trained at (64).
    result = export("default", out, force=True)
    print(result.report.table())

    print(f"\n== 3. the same reviews through every runtime ({result.out})")
    columns, cells = [], {}
    for runtime_name, artifact in runs(result.manifest):
        label = runtime_name if artifact == "reference" else artifact
        columns.append(label)
        with runtimes.load(result.out, runtime=runtime_name, artifact=artifact) as runtime:
            logits = runtime.logits(REVIEWS)
        probabilities = np.exp(logits - logits.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        names = result.manifest["config"].get("id2label", {})
        for i, row in enumerate(probabilities):
            cells[i, label] = f"{names.get(str(int(row.argmax())), int(row.argmax()))} {row.max():.4f}"
    print("| review | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for i, text in enumerate(REVIEWS):
        print(f"| {text} | " + " | ".join(cells[i, c] for c in columns) + " |")
    agree = all(len({cells[i, c].split()[0] for c in columns}) == 1 for i in range(len(REVIEWS)))
    print(f"\nall runtimes agree on every label: {agree}")
    return 0 if agree and result.report.passed else 1
