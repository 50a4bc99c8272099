"""`kobert demo`, the main job: the shipped default through every framework.

1. tokenise a few Korean reviews with the shipped tokenizer;
2. export the shipped default model to TF, ONNX, tf2onnx-ONNX and MXNet, checking parity;
3. classify the reviews through all runtimes and print one table.

Until a trained default model ships (kobert/assets/model/), the demo uses a
deterministic random-init `small` checkpoint with a 2-label head, and says so:
its labels are meaningless, but every runtime must still agree on them.
"""

from __future__ import annotations

import json
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

REVIEWS = [
    "이 영화 정말 재밌어요 ㅋㅋㅋ 강추!!",
    "스토리가 너무 지루하고 연기도 별로였다....",
    "배우들의 연기가 훌륭했지만 결말이 아쉬웠습니다.",
    "시간 낭비였다. 최악의 영화",
    "올해 본 영화 중 최고였다",
]


def shipped(name: str) -> Path:
    return Path(str(resources.files("kobert").joinpath("assets", name)))


def default_checkpoint() -> Path:
    model = shipped("model")
    if not (model / "config.json").is_file():
        raise FileNotFoundError(f"{model}: no shipped default model in this version of kobert")
    return model


def _demo_checkpoint(workdir: Path) -> tuple[Path, str]:
    try:
        return default_checkpoint(), "shipped default model"
    except FileNotFoundError:
        from kobert.checkpoint import init_checkpoint
        from kobert.config import preset

        path = init_checkpoint(preset("small").with_head("sequence_classification", 2), workdir / "checkpoint", seed=0)
        return path, "random-init `small` checkpoint, seed 0 (UNTRAINED: labels are meaningless, agreement is the point)"


def run_demo(out: str | Path = "artifacts/default") -> int:
    from kobert import runtimes
    from kobert.evaluate import RUNS
    from kobert.export import export
    from kobert.tokenizer import get_tokenizer

    tokenizer_dir = shipped("tokenizer")
    tokenizer = get_tokenizer(tokenizer_dir)
    print("== 1. tokenizer (shipped default)")
    for text in REVIEWS[:2]:
        ids = tokenizer(text)["input_ids"]
        print(json.dumps({"text": text, "tokens": tokenizer.convert_ids_to_tokens(ids), "input_ids": ids}, ensure_ascii=False))

    with tempfile.TemporaryDirectory() as work:
        checkpoint, what = _demo_checkpoint(Path(work))
        print(f"\n== 2. export + parity: {what}")
        result = export(checkpoint, out, tokenizer=tokenizer_dir, force=True)
    print(result.report.table())

    print(f"\n== 3. the same reviews through every runtime ({result.out})")
    columns, cells = [], {}
    for runtime_name, artifact in RUNS:
        label = artifact or runtime_name
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
