"""The int8 tiers' task gate on each task's own data (`kobert export --eval-set TASK[:PATH]`).

The eval sets are made from the fp32 model's own predictions (so fp32 scores ~100 and any int8
difference shows), written in each task's file format and read back by the task's reader. The
gate's figures must equal the metric `kobert.evaluate` computes on the exported int8 artifact,
its verdict must follow its limit (figures chosen by hand), and an impossible limit must fail the
export naming the metric. Without an eval set, an int8 NER tier is judged on its token labels.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from kobert import parity, runtimes
from kobert.checkpoint import init_checkpoint, load_checkpoint, shipped
from kobert.config import KoBertConfig
from kobert.datasets import NER_LABELS, YNAT_LABELS, read_task, read_task_file
from kobert.evaluate import GATED_METRICS, QA_ALIGN_TO_WORDS, predict_task, score
from kobert.export import ExportError, ParityFailure, export
from kobert.metrics import strict_entities

SHAPE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
GOLDEN = json.loads((shipped("tokenizer").parent / "golden_inputs.json").read_text(encoding="utf-8"))["texts"]
TEXTS = GOLDEN + [f"{a} {b}" for a, b in zip(GOLDEN, GOLDEN[::-1])]


def checkpoint_for(task: str, root) -> object:
    head, labels = {"ner": ("token_classification", NER_LABELS), "qa": ("question_answering", ("s", "e")),
                    "sts": ("sequence_classification", ("score",)), "ynat": ("sequence_classification", YNAT_LABELS)}[task]
    config = KoBertConfig(**SHAPE, head=head, num_labels=len(labels),
                          id2label={} if task == "qa" else dict(enumerate(labels)))
    checkpoint = init_checkpoint(config, root / "ck", seed=11)
    state = load_file(str(checkpoint / "model.safetensors"))
    # Encoder sharpened and head scaled, so predictions differ from text to text and token to token.
    state = {k: v * 4 if k.startswith("bert.encoder.") and v.ndim == 2 else v for k, v in state.items()}
    name = "qa_outputs" if task == "qa" else "classifier"
    state[f"{name}.weight"] = state[f"{name}.weight"] * 20
    save_file(state, str(checkpoint / "model.safetensors"), metadata={"format": "pt"})
    return checkpoint


def fp32_runtime(checkpoint):
    from kobert.runtimes.torch import InMemoryRuntime, build_reference_model

    weights = load_checkpoint(checkpoint).weights
    return InMemoryRuntime(build_reference_model(weights), weights.config, shipped("tokenizer"), 512)


def write_eval_set(task: str, checkpoint, path) -> None:
    """The fp32 model's predictions on TEXTS, in the task's file format."""
    rt = fp32_runtime(checkpoint)
    if task == "ynat":
        rows = [f"{row['label']}\t{text}" for text, row in zip(TEXTS, rt.classify(TEXTS))]
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")  # no header, as the dev file
    elif task == "sts":
        firsts, seconds = TEXTS, TEXTS[1:] + TEXTS[:1]
        scores = [row["score"] for row in rt.classify(firsts, pairs=seconds)]
        rows = ["genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2"]
        rows += [f"g\tf\t2012\t{i:04d}\t{s:.6f}\t{a}\t{b}" for i, (s, a, b) in enumerate(zip(scores, firsts, seconds))]
        path.write_text("\n".join(rows), encoding="utf-8")
    elif task == "qa":
        questions, contexts = TEXTS[:8], [" ".join(TEXTS[i:i + 6]) for i in range(8)]
        answers = rt.answer(questions, contexts, align_to_words=QA_ALIGN_TO_WORDS)  # as the gate answers
        paragraphs = [{"context": c, "qas": [{"id": str(i), "question": q,
                                               "answers": [{"text": a["answer"], "answer_start": a["start"]}]}]}
                      for i, (q, c, a) in enumerate(zip(questions, contexts, answers))]
        path.write_text(json.dumps({"version": "test", "data": [{"title": "t", "paragraphs": paragraphs}]},
                                   ensure_ascii=False), encoding="utf-8")
    elif task == "ner":
        lines = []
        encoder = rt.text_encoder
        for text in TEXTS:
            encoding = encoder.encodings([text])[0]
            tokens = [i for i, special in enumerate(encoding.special_tokens_mask) if not special]
            logits = rt.run(**encoder.arrays([encoding]))["logits"][0]
            tags = [NER_LABELS[int(logits[i].argmax())] for i in tokens]
            tagged, position = "", 0
            for first, last, kind in sorted(strict_entities(tags)):
                start, end = encoding.offsets[tokens[first]][0], encoding.offsets[tokens[last - 1]][1]
                start += len(text[start:end]) - len(text[start:end].lstrip())
                tagged += f"{text[position:start]}<{text[start:end]}:{kind}>"
                position = end
            lines += [f"; {text}", f"${tagged}{text[position:]}", ""]
        path.write_text("\n".join(lines), encoding="utf-8")


FILES = {"ynat": "ynat_dev.tsv", "sts": "sts-test.tsv", "qa": "korquad.json", "ner": "ner.test"}


@pytest.mark.parametrize("task", list(FILES))
def test_the_int8_gate_scores_the_task_metric(task, tmp_path, monkeypatch):
    checkpoint = checkpoint_for(task, tmp_path)
    eval_file = tmp_path / FILES[task]
    spec, source = f"{task}:{eval_file}", eval_file.name
    if task == "ynat":  # --eval-set ynat: the dev file where the shared data folder keeps it
        eval_file = tmp_path / "shared" / "klue" / "ynat-v1.1_derived" / "ynat_dev.tsv"
        eval_file.parent.mkdir(parents=True)
        monkeypatch.setenv("KOBERT_DATA_DIR", str(tmp_path / "shared"))
        spec, source = "ynat", "ynat eval split"
    write_eval_set(task, checkpoint, eval_file)
    data = read_task_file(task, eval_file)
    fp32 = score(task, predict_task(task, fp32_runtime(checkpoint), data), data)
    assert all(fp32[m] > 90 for m in GATED_METRICS[task]), f"{task}: fp32 scores {fp32} on its own predictions"
    # A gate every int8 model meets, to read its figures off a finished export.
    monkeypatch.setitem(parity.GATES, "int8", parity.ParityGate(
        "int8", None, 0.9, task_gate=True, max_metric_delta_points=dict.fromkeys(parity.TASK_METRIC_POINTS, 100.0)))
    result = export(checkpoint, tmp_path / "export", targets="onnx-int8", tokenizer=shipped("tokenizer"),
                    eval_set=spec)
    figures = result.report.artifacts["onnx-int8"].task
    assert figures["measured_on"] == f"{task} eval set {source}" and figures["examples"] == len(data)
    with runtimes.load(result.out, runtime="onnx", artifact="onnx-int8") as rt:
        int8 = score(task, predict_task(task, rt, data), data)
    for metric in GATED_METRICS[task]:
        assert figures["fp32"][metric] == pytest.approx(fp32[metric], abs=1e-9)
        assert figures["metrics"][metric] == pytest.approx(int8[metric], abs=1e-9)


def test_metric_gate_verdict_at_its_limits():
    """Figures chosen by hand on each side of the 0.5-point limit, not recomputed by the test."""
    limits = {"entity_f1": 0.5, "f1": 0.5, "exact_match": 0.5}
    check, figures = parity.metric_gate("ner", ("entity_f1",), {"entity_f1": 80.0}, {"entity_f1": 79.6}, limits, 10)
    assert check == "ok" and figures["delta_points"]["entity_f1"] == pytest.approx(-0.4)
    check, _ = parity.metric_gate("ner", ("entity_f1",), {"entity_f1": 80.0}, {"entity_f1": 79.4}, limits, 10)
    assert check == "entity_f1 79.40 vs fp32 80.00 on 10 examples: 0.60 points > 0.5"
    check, _ = parity.metric_gate("qa", ("exact_match", "f1"), {"exact_match": 50.0, "f1": 60.0},
                                  {"exact_match": 50.0, "f1": 60.7}, limits, 8)
    assert check.startswith("f1 60.70 vs fp32 60.00") and "exact_match" not in check


def test_an_int8_ner_export_without_eval_set_is_judged_on_its_token_labels(tmp_path, transformers_reference):
    """No `--eval-set`: the int8 tier is judged on every valid golden token's label, and the agreement it
    reports is what transformers (fp32) and plain onnxruntime (int8) say."""
    import onnxruntime
    from transformers import AutoTokenizer

    checkpoint = checkpoint_for("ner", tmp_path)
    monkey_gate = parity.ParityGate("int8", None, 0.9, head_min_cosine=0.9, task_gate=True,
                                    max_accuracy_delta_points=100.0)  # to read the figures off a finished export
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(parity.GATES, "int8", monkey_gate)
        result = export(checkpoint, tmp_path / "export", targets="onnx-int8", tokenizer=shipped("tokenizer"))
    figures = result.report.artifacts["onnx-int8"].task
    cases = parity.golden_cases(8002, 512, AutoTokenizer.from_pretrained(str(shipped("tokenizer"))))
    model = transformers_reference.load(checkpoint)
    session = onnxruntime.InferenceSession(str(result.out / "onnx-int8" / "model.onnx"))
    want, got = [], []
    for case in cases:
        valid = case.attention_mask.astype(bool)
        want.append(transformers_reference.outputs(model, case.inputs())["logits"].argmax(-1)[valid])
        got.append(session.run(["logits"], case.inputs())[0].argmax(-1)[valid])
    want, got = np.concatenate(want), np.concatenate(got)
    assert len(set(want.tolist())) > 3, "the spread head gives many labels"
    assert "golden inputs" in figures["measured_on"] and figures["examples"] == len(want)
    assert figures["label_agreement"] == pytest.approx(float((want == got).mean()), abs=1e-12)
    assert result.report.artifacts["onnx-int8"].outputs["logits"].min_cosine >= 0.9


def test_an_impossible_limit_fails_the_export_naming_the_metric(tmp_path, monkeypatch):
    checkpoint = checkpoint_for("ner", tmp_path)
    write_eval_set("ner", checkpoint, tmp_path / "ner.test")
    monkeypatch.setitem(parity.GATES, "int8", parity.ParityGate(
        "int8", None, 0.9, task_gate=True, max_metric_delta_points=dict.fromkeys(parity.TASK_METRIC_POINTS, -1.0)))
    with pytest.raises(ParityFailure) as failure:
        export(checkpoint, tmp_path / "export", targets="onnx-int8", tokenizer=shipped("tokenizer"),
               eval_set=f"ner:{tmp_path / 'ner.test'}")
    assert any("onnx-int8: task: entity_f1" in line and "points > -1.0" in line for line in failure.value.report.failures)
    assert not (tmp_path / "export").exists()


def test_eval_set_task_reads_the_shared_layout_and_refuses_a_wrong_head(tmp_path, monkeypatch):
    checkpoint = checkpoint_for("ynat", tmp_path)
    data_dir = tmp_path / "shared"
    (data_dir / "klue" / "ynat-v1.1_derived").mkdir(parents=True)
    write_eval_set("ynat", checkpoint, data_dir / "klue" / "ynat-v1.1_derived" / "ynat_dev.tsv")
    monkeypatch.setenv("KOBERT_DATA_DIR", str(data_dir))
    assert len(read_task("ynat", "eval")) == len(TEXTS)
    sts = tmp_path / "sts.tsv"
    sts.write_text("genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2\ng\tf\t2012\t1\t4.5\t가\t나\n",
                   encoding="utf-8")
    with pytest.raises(ExportError, match="--eval-set sts: sts needs a 1-label regression head"):
        export(checkpoint, tmp_path / "x", targets="onnx-int8", eval_set=f"sts:{sts}")
    with pytest.raises(ExportError, match="ner/kmou_2016klp/ner.test: missing"):
        export(checkpoint, tmp_path / "x", targets="onnx-int8", eval_set="ner")
    with pytest.raises(ExportError, match="nothing.tsv: eval set not found"):
        export(checkpoint, tmp_path / "x", targets="onnx-int8", eval_set="ynat:nothing.tsv")
