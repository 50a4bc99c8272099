"""Tiers (onnx-optimized, onnx-fp16, onnx-int8, tflite, tflite-int8): manifest, gates, failing hard.

The tiny test model's classifier is scaled (`spread_head`) so that its labels differ from input to
input: on an unscaled random head every input gets one label, and no label check could fail.
"""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from kobert import parity, runtimes
from kobert.checkpoint import init_checkpoint, shipped
from kobert.config import preset
from kobert.export import ExportError, ParityFailure, export, read_eval_set, reparity, unjudgeable

TIERS = ["onnx-optimized", "onnx-fp16", "onnx-int8", "tflite", "tflite-int8"]
GOLDEN_TEXTS = json.loads((shipped("tokenizer").parent / "golden_inputs.json").read_text(encoding="utf-8"))["texts"]


def spread_head(checkpoint):
    """A test model whose labels differ from input to input, with a clear margin: the encoder's matrices
    sharpened (x4) so that inputs move the pooled output, and a classifier along the pooled outputs' main
    direction of variation over the golden inputs, its threshold in the widest gap that leaves at least
    4 rows on each side (computed with transformers). A random tiny head gives every input one label."""
    import transformers_reference

    state = load_file(str(checkpoint / "model.safetensors"))
    state = {k: v * 4 if k.startswith("bert.encoder.") and v.ndim == 2 else v for k, v in state.items()}
    save_file(state, str(checkpoint / "model.safetensors"), metadata={"format": "pt"})
    model = transformers_reference.load(checkpoint)
    pooled = np.concatenate([transformers_reference.outputs(model, inputs)["pooler_output"]
                             for _, inputs in golden_inputs()])
    direction = np.linalg.svd(pooled - pooled.mean(axis=0), full_matrices=False)[2][0]
    inner = np.sort(pooled @ direction)[3:-3]
    gap = int(np.argmax(np.diff(inner)))
    threshold = (inner[gap] + inner[gap + 1]) / 2
    scale = 1.0 / np.abs(pooled @ direction - threshold).max()  # logits within about +-1
    state["classifier.weight"] = (np.stack([-direction, direction]) * scale / 2).astype(np.float32)
    state["classifier.bias"] = (np.array([threshold, -threshold]) * scale / 2).astype(np.float32)
    save_file(state, str(checkpoint / "model.safetensors"), metadata={"format": "pt"})
    return checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = preset("tiny").with_head("sequence_classification", 2)
    return spread_head(init_checkpoint(config, tmp_path_factory.mktemp("ck") / "ck", seed=5))


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    return export(checkpoint, tmp_path_factory.mktemp("out") / "export", targets=["onnx", *TIERS],
                  tokenizer=shipped("tokenizer"))


def golden_inputs():
    """The golden cases the gates judge, Korean texts included, as (name, inputs)."""
    from transformers import AutoTokenizer

    cases = parity.golden_cases(8002, 512, AutoTokenizer.from_pretrained(str(shipped("tokenizer"))))
    return [(case.name, case.inputs()) for case in cases]


def transformers_labels(checkpoint, transformers_reference) -> np.ndarray:
    """fp32's top label on every golden row, by transformers itself."""
    model = transformers_reference.load(checkpoint)
    return np.concatenate([transformers_reference.outputs(model, inputs)["logits"].argmax(-1)
                           for _, inputs in golden_inputs()])


def plain_onnx_labels(model_path) -> np.ndarray:
    """The same rows' top labels through a plain onnxruntime session of an artifact."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model_path))
    names = [i.name for i in session.get_inputs()]
    return np.concatenate([session.run(["logits"], {n: inputs[n] for n in names})[0].argmax(-1)
                           for _, inputs in golden_inputs()])


def test_the_test_model_predicts_both_labels(checkpoint, transformers_reference):
    labels = transformers_labels(checkpoint, transformers_reference)
    assert set(labels.tolist()) == {0, 1}, "a head with one label everywhere cannot fail a label check"


def test_tiers_are_manifest_artifacts_with_their_own_gates(exported):
    manifest = json.loads((exported.out / "manifest.json").read_text())
    assert list(manifest["artifacts"]) == ["onnx", *TIERS]
    assert not (exported.out / "tf").exists(), "the SavedModel was only an input to tflite"
    tiers = {name: manifest["artifacts"][name].get("tier") for name in TIERS}
    assert tiers == {"onnx-optimized": "fp32-fused", "onnx-fp16": "fp16", "onnx-int8": "int8",
                     "tflite": "fp32", "tflite-int8": "int8"}
    report = json.loads((exported.out / "parity.json").read_text())
    assert report["passed"]
    gates = {name: report["artifacts"][name].get("gate", {}).get("tier") for name in ["onnx", *TIERS]}
    assert gates == {"onnx": "fp32", "onnx-optimized": "fp32-fused", "onnx-fp16": "fp16", "onnx-int8": "int8",
                     "tflite": "fp32", "tflite-int8": "int8"}
    assert report["artifacts"]["onnx-optimized"]["outputs"]["last_hidden_state"]["max_abs"] <= 1e-4
    assert report["artifacts"]["onnx-fp16"]["outputs"]["pooler_output"]["min_cosine"] >= 0.9999
    assert report["artifacts"]["onnx-fp16"]["outputs"]["mean_embedding"]["min_cosine"] >= 0.9999
    for name, head_cosine in (("onnx-fp16", 0.999), ("onnx-int8", 0.99), ("tflite-int8", 0.99)):
        assert report["artifacts"][name]["gate"]["head_min_cosine"] == head_cosine
        assert report["artifacts"][name]["outputs"]["logits"]["min_cosine"] >= head_cosine
    for name in ("onnx-int8", "tflite-int8"):
        task = report["artifacts"][name]["task"]
        assert "golden inputs" in task["measured_on"] and task["examples"] == sum(
            len(inputs["input_ids"]) for _, inputs in golden_inputs())
        assert report["artifacts"][name]["checks"]["task"] == "ok"


def test_the_int8_label_check_agrees_with_an_independent_count(exported, checkpoint, transformers_reference):
    """The figure the gate reports is what transformers (fp32) and plain onnxruntime (int8) say."""
    task = json.loads((exported.out / "parity.json").read_text())["artifacts"]["onnx-int8"]["task"]
    want = transformers_labels(checkpoint, transformers_reference)
    got = plain_onnx_labels(exported.out / "onnx-int8" / "model.onnx")
    assert task["label_agreement"] == pytest.approx(float((want == got).mean()), abs=1e-12)


def test_predicted_labels_per_head():
    mask = np.array([[1, 1, 1, 0]])
    per_token = ("last_hidden_state", "logits", "start_logits", "end_logits")
    tokens = {"logits": np.array([[[0, 1], [2, 0], [0, 3], [9, 0]]])}  # the padded position is not read
    assert parity.predicted_labels(tokens, mask, ("logits",), per_token).tolist() == [1, 0, 1]
    spans = {"start_logits": np.array([[0.0, 2.0, 1.0, 5.0]]), "end_logits": np.array([[3.0, 0.0, 1.0, 9.0]])}
    assert parity.predicted_labels(spans, mask, ("start_logits", "end_logits"), per_token).tolist() == [1, 0]
    rows = {"logits": np.array([[0.1, 0.2], [0.3, -1.0]])}
    assert parity.predicted_labels(rows, np.ones((2, 4)), ("logits",), ("last_hidden_state",)).tolist() == [1, 0]


def test_a_gate_that_judged_nothing_fails():
    check, figures = parity.task_gate(np.zeros(0), np.zeros(0))
    assert check.startswith("no predictions to judge") and figures["measured_on"] == "nothing"
    regression = preset("tiny").with_head("sequence_classification", 1)
    assert "--eval-set sts" in unjudgeable(regression, None)
    assert unjudgeable(preset("tiny").with_head("token_classification", 3), None) == ""


def test_fused_graph_keeps_exact_gelu(exported):
    manifest = json.loads((exported.out / "manifest.json").read_text())
    for name in ("onnx-optimized", "onnx-fp16", "onnx-int8"):
        ops = manifest["artifacts"][name]["op_counts"]
        assert not {"FastGelu", "GemmFastGelu", "QuickGelu"} & set(ops), name
    assert manifest["artifacts"]["onnx-optimized"]["fusions"].get("BiasGelu", 0) > 0


@pytest.mark.parametrize("artifact", ["tflite", "tflite-int8"])
def test_tflite_runs_any_batch_and_length(exported, checkpoint, transformers_reference, artifact):
    # Judged against transformers, relative to the logits' own scale: fp32 within 1e-4 of it, int8 within
    # 10 % (the golden inputs measured about 5 %), and every top label kept where fp32's margin exceeds that.
    model = transformers_reference.load(checkpoint)
    rng = np.random.default_rng(3)
    with runtimes.load(exported.out, "tflite", artifact) as rt:
        for shape in [(1, 3), (4, 21), (2, 7), (1, 3)]:
            ids = rng.integers(5, 8002, size=shape)
            got = rt.run(ids)
            want = transformers_reference.outputs(model, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                                          "token_type_ids": np.zeros_like(ids)})["logits"]
            assert got["last_hidden_state"].shape == (*shape, 32)
            limit = (1e-4 if artifact == "tflite" else 0.1) * np.abs(want).max()
            assert np.abs(got["logits"] - want).max() <= limit
            clear = np.abs(want[:, 0] - want[:, 1]) > 2 * limit
            assert np.array_equal(got["logits"].argmax(-1)[clear], want.argmax(-1)[clear])


def test_out_of_tolerance_tier_fails_the_export_and_leaves_nothing(checkpoint, tmp_path, monkeypatch):
    # fp16 really measures about 0.999999 here; a gate beyond fp16's precision must stop the export.
    monkeypatch.setitem(parity.GATES, "fp16", parity.ParityGate("fp16", max_abs=None, min_cosine=0.9999999999))
    out = tmp_path / "dest"
    with pytest.raises(ParityFailure) as failure:
        export(checkpoint, out, targets="onnx-fp16")
    assert any(line.startswith("onnx-fp16.pooler_output: min cosine") for line in failure.value.report.failures)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_wrong_head_fails_its_gate_though_the_embeddings_pass(checkpoint, tmp_path, monkeypatch):
    """The classifier negated in the fp16 graph: embeddings untouched, so only the head cosine can see it."""
    import onnx
    from onnx import numpy_helper

    import kobert.exporters.onnx_tiers as onnx_tiers

    real = onnx_tiers.fp16

    class WrongHead:
        def export(self, weights, export_dir):
            artifact = real.export(weights, export_dir)
            path = export_dir / artifact.files[0]
            model = onnx.load(str(path))
            [classifier] = [init for init in model.graph.initializer if init.name.endswith("classifier.weight")]
            classifier.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(classifier), classifier.name))
            onnx.save(model, str(path))
            return artifact

    monkeypatch.setattr(onnx_tiers, "fp16", WrongHead())
    with pytest.raises(ParityFailure) as failure:
        export(checkpoint, tmp_path / "dest", targets="onnx-fp16")
    failures = failure.value.report.failures
    assert any(line.startswith("onnx-fp16.logits: min cosine") for line in failures), failures
    assert not any("pooler_output" in line or "mean_embedding" in line for line in failures)
    assert not (tmp_path / "dest").exists()


def test_int8_task_gate_on_a_labelled_eval_set(checkpoint, tmp_path, monkeypatch, transformers_reference):
    from transformers import AutoTokenizer

    # Labels from transformers itself (fp32), not from any kobert runtime.
    encoded = AutoTokenizer.from_pretrained(str(shipped("tokenizer")))(GOLDEN_TEXTS, padding=True, return_tensors="np")
    labels = transformers_reference.outputs(transformers_reference.load(checkpoint), dict(encoded))["logits"].argmax(-1)
    tsv = tmp_path / "eval.tsv"
    tsv.write_text("id\tdocument\tlabel\n" + "".join(f"{i}\t{t}\t{l}\n" for i, (t, l) in enumerate(zip(GOLDEN_TEXTS, labels))),
                   encoding="utf-8")
    result = export(checkpoint, tmp_path / "int8", targets="onnx-int8", tokenizer=shipped("tokenizer"), eval_set=tsv)
    task = result.report.artifacts["onnx-int8"].task
    assert task["measured_on"] == "labelled eval set eval.tsv" and task["examples"] == len(GOLDEN_TEXTS)
    assert task["fp32_accuracy"] == 1.0 and abs(task["accuracy_delta_points"]) <= 0.3
    recorded = result.manifest["eval_set"]
    assert recorded["path"] == str(tsv) and recorded["sha256"] == __import__("hashlib").sha256(tsv.read_bytes()).hexdigest()
    # The same export with a gate no int8 model can meet fails, naming the accuracy.
    monkeypatch.setitem(parity.GATES, "int8", parity.ParityGate("int8", None, 0.999, task_gate=True,
                                                                max_accuracy_delta_points=-1.0))
    with pytest.raises(ParityFailure) as failure:
        export(checkpoint, tmp_path / "int8-strict", targets="onnx-int8", tokenizer=shipped("tokenizer"), eval_set=tsv)
    assert any("onnx-int8: task: accuracy" in line for line in failure.value.report.failures)
    # `kobert parity` re-judges with the recorded eval set, and refuses a changed one.
    monkeypatch.undo()
    assert reparity(result.out).artifacts["onnx-int8"].task["measured_on"] == "labelled eval set eval.tsv"
    tsv.write_text(tsv.read_text(encoding="utf-8") + "99\t좋다\t1\n", encoding="utf-8")
    with pytest.raises(ExportError, match="eval.tsv: the eval set .* has changed"):
        reparity(result.out)


def test_eval_set_needs_text_and_label_columns(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\tcomment\n1\t좋다\n", encoding="utf-8")
    with pytest.raises(ValueError, match="text column"):
        read_eval_set(bad)


def test_eval_floor_comes_from_each_tier_gate():
    """The README's int8 tiers agree with torch on 99.83 %: their gate allows 0.3 points, an fp32 artifact 0.1."""
    from kobert.evaluate import RuntimeAccuracy, below_floor

    results = [RuntimeAccuracy("torch", 0.83, 1.0, 1.0), RuntimeAccuracy("onnx-int8", 0.83, 0.9983, 1.0),
               RuntimeAccuracy("tflite-int8", 0.83, 0.9969, 1.0), RuntimeAccuracy("onnx", 0.83, 0.9985, 1.0)]
    assert below_floor(results) == ["tflite-int8: agreement with torch 99.690 % < 99.7 %",
                                    "onnx: agreement with torch 99.850 % < 99.9 %"]
    assert [line.split(":")[0] for line in below_floor(results, 0.999)] == ["onnx-int8", "tflite-int8", "onnx"]
