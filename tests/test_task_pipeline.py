"""Every Korean task end to end on a small slice of the shared data: `kobert finetune` a few steps
(tiny preset) -> `kobert export` to every fp32 target -> `kobert eval` through every runtime.

Asserted: the run folder (log.csv, loss.png, an atomic checkpoint, eval.json); every runtime
predicts what torch predicts (agreement 100 %, so the same metric); and the metric `kobert eval`
measures on the export's torch reference equals the one fine-tuning measured on its in-memory
model. Skipped when ../shared/data (or $KOBERT_DATA_DIR) is absent.
"""

from __future__ import annotations

import csv
import json

import pytest

from kobert import registry
from kobert.checkpoint import init_checkpoint
from kobert.config import preset
from kobert.datasets import TASK_FILES, default_data_dir, read_task
from kobert.evaluate import TASK_METRICS, evaluate_task

pytestmark = pytest.mark.shared_data

# tf-text and keras embed a SentencePiece model file, which a fine-tuned run's tokenizer folder does not carry.
FP32 = [name for name, t in registry.TARGETS.items() if t.gate == "fp32" and name not in ("tf-text", "keras")]
# Examples per split, and tokens per text (QA: per window), small enough for CI on 2 cores.
SLICES = {"nsmc": (160, 64), "ynat": (160, 64), "ner": (80, 96), "sts": (160, 64), "qa": (24, 128)}
STEPS = 6


def task_data_present(task: str) -> bool:
    data = default_data_dir()
    if task == "nsmc":
        return (data / "nsmc" / "ratings_test.txt").is_file()
    return all((data / path).is_file() for (name, _), path in TASK_FILES.items() if name == task)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return init_checkpoint(preset("tiny"), tmp_path_factory.mktemp("base") / "ck", seed=3)


@pytest.mark.parametrize("task", list(SLICES))
def test_finetune_export_and_eval_through_every_runtime(task, tiny_base, tmp_path, capsys):
    from kobert.export import export
    from kobert.training.finetune import FinetuneConfig, finetune

    if not task_data_present(task):
        pytest.skip(f"{default_data_dir()}: no {task} data (shared data not available)")
    limit, max_length = SLICES[task]
    run = tmp_path / "run"
    result = finetune(FinetuneConfig(task, str(tiny_base), str(run), max_steps=STEPS, batch_size=16, lr=1e-3,
                                     limit=limit, max_length=max_length, log_every=2, progress=False))
    with open(run / "log.csv", newline="") as f:
        logged = list(csv.DictReader(f))
    assert [int(r["step"]) for r in logged] == list(range(2, STEPS + 1, 2))
    assert (run / "loss.png").stat().st_size > 0
    assert (run / "checkpoints" / "latest").read_text() == f"step_{STEPS:07d}"
    assert json.loads((run / "eval.json").read_text())["steps"] == STEPS

    exported = export(run, tmp_path / "export", targets=FP32)
    assert exported.report.passed, exported.report.table()
    data = read_task(task, "eval", limit=limit)
    results = evaluate_task(exported.out, task, data, batch_size=32)
    assert [r.name for r in results] == ["torch", *FP32]
    metric = TASK_METRICS[task][0]
    for r in results:
        assert r.agreement == 1.0, f"{task}: {r.name} agrees with torch on {100 * r.agreement:.2f} % only"
        assert abs(r.metrics[metric] - results[0].metrics[metric]) < 1e-6 or task == "sts"
    # STS: scores agree within 1e-3, so the rank correlation can move in its last digits.
    assert max(abs(r.metrics[metric] - results[0].metrics[metric]) for r in results) < 0.05
    assert abs(results[0].metrics[metric] - result[metric]) < 0.05, "kobert eval and fine-tuning scored differently"
    if task == "nsmc":  # `kobert eval nsmc` (its own encode-once path) scores what evaluate_task scored
        from kobert.cli import main
        from kobert.datasets import locate_nsmc

        assert main(["--quiet", "eval", "nsmc", str(exported.out), "--limit", str(limit),
                     "--nsmc-dir", str(locate_nsmc())]) == 0
        assert f"| torch | {results[0].metrics['accuracy']:.2f} % |" in capsys.readouterr().out


def test_kobert_eval_prints_the_table_and_exits_on_disagreement(tiny_base, tmp_path, capsys):
    from kobert.cli import main
    from kobert.export import export
    from kobert.training.finetune import FinetuneConfig, finetune

    if not task_data_present("ner"):
        pytest.skip(f"{default_data_dir()}: no ner data (shared data not available)")
    finetune(FinetuneConfig("ner", str(tiny_base), str(tmp_path / "run"), max_steps=2, batch_size=8, limit=16,
                            max_length=64, progress=False))
    export(tmp_path / "run", tmp_path / "export", targets=["onnx"])
    record_file = tmp_path / "eval-ner.json"
    assert main(["--quiet", "eval", "ner", str(tmp_path / "export"), "--limit", "16", "--json", str(record_file)]) == 0
    out = capsys.readouterr().out
    assert "| runtime | entity_f1 | precision | recall | agreement with torch | seconds |" in out
    assert "| onnx |" in out and "lowest agreement with torch: 100.000 %" in out
    record = json.loads(record_file.read_text(encoding="utf-8"))  # --json: the printed figures, with provenance
    assert record["task"] == "ner" and record["examples"] == 16 and record["command"].startswith("kobert ")
    assert [r["runtime"] for r in record["results"]] == ["torch", "onnx"] and "CPUs visible" in record["cpu"]
    for r in record["results"]:
        m = r["metrics"]
        assert f"| {r['runtime']} | {m['entity_f1']:.2f} | {m['precision']:.2f} | {m['recall']:.2f} | " \
               f"{r['agreement_percent']:.3f} % |" in out
    assert main(["--quiet", "eval", "qa", str(tmp_path / "export"), "--limit", "4"]) == 2
    assert "qa needs a question_answering head" in capsys.readouterr().err
