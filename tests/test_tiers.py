"""Tiers (onnx-optimized, onnx-fp16, onnx-int8, tflite, tflite-int8): manifest, gates, failing hard."""

import json

import numpy as np
import pytest

from kobert import parity, runtimes
from kobert.checkpoint import init_checkpoint
from kobert.config import preset
from kobert.export import ParityFailure, export, read_eval_set

TIERS = ["onnx-optimized", "onnx-fp16", "onnx-int8", "tflite", "tflite-int8"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return init_checkpoint(preset("tiny").with_head("sequence_classification", 2), tmp_path_factory.mktemp("ck") / "ck", seed=5)


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    return export(checkpoint, tmp_path_factory.mktemp("out") / "export", targets=["onnx", *TIERS])


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
    for name in ("onnx-int8", "tflite-int8"):
        task = report["artifacts"][name]["task"]
        assert "golden inputs" in task["measured_on"] and task["label_agreement"] >= 0.997
        assert report["artifacts"][name]["checks"]["task"] == "ok"


def test_fused_graph_keeps_exact_gelu(exported):
    manifest = json.loads((exported.out / "manifest.json").read_text())
    for name in ("onnx-optimized", "onnx-fp16", "onnx-int8"):
        ops = manifest["artifacts"][name]["op_counts"]
        assert not {"FastGelu", "GemmFastGelu", "QuickGelu"} & set(ops), name
    assert manifest["artifacts"]["onnx-optimized"]["fusions"].get("BiasGelu", 0) > 0


@pytest.mark.parametrize("artifact", ["tflite", "tflite-int8"])
def test_tflite_runs_any_batch_and_length(exported, artifact):
    rng = np.random.default_rng(3)
    with runtimes.load(exported.out, runtime="onnx") as reference, runtimes.load(exported.out, "tflite", artifact) as rt:
        for shape in [(1, 3), (4, 21), (2, 7), (1, 3)]:
            ids = rng.integers(5, 8002, size=shape)
            got, want = rt.run(ids), reference.run(ids)
            assert got["last_hidden_state"].shape == (*shape, 32)
            limit = 1e-4 if artifact == "tflite" else 0.2
            assert np.abs(got["logits"] - want["logits"]).max() <= limit


def test_out_of_tolerance_tier_fails_the_export_and_leaves_nothing(checkpoint, tmp_path, monkeypatch):
    # fp16 really measures about 0.999999 here; a gate beyond fp16's precision must stop the export.
    monkeypatch.setitem(parity.GATES, "fp16", parity.ParityGate("fp16", max_abs=None, min_cosine=0.9999999999))
    out = tmp_path / "dest"
    with pytest.raises(ParityFailure) as failure:
        export(checkpoint, out, targets="onnx-fp16")
    assert any(line.startswith("onnx-fp16.pooler_output: min cosine") for line in failure.value.report.failures)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_degraded_fp16_model_fails_its_gate(checkpoint, tmp_path, monkeypatch):
    import onnx
    from onnx import numpy_helper

    import kobert.exporters.onnx_tiers as onnx_tiers

    real = onnx_tiers.fp16

    class Degraded:
        def export(self, weights, export_dir):
            artifact = real.export(weights, export_dir)
            path = export_dir / artifact.files[0]
            model = onnx.load(str(path))
            for init in model.graph.initializer:
                array = numpy_helper.to_array(init)
                if array.ndim == 2 and array.shape[0] == array.shape[1]:  # attention / pooler projections
                    noise = np.random.default_rng(0).normal(0, 0.05, array.shape).astype(array.dtype)
                    init.CopyFrom(numpy_helper.from_array(array + noise, init.name))
            onnx.save(model, str(path))
            return artifact

    monkeypatch.setattr(onnx_tiers, "fp16", Degraded())
    with pytest.raises(ParityFailure) as failure:
        export(checkpoint, tmp_path / "dest", targets="onnx-fp16")
    assert any("min cosine" in line for line in failure.value.report.failures)
    assert not (tmp_path / "dest").exists()


def test_int8_task_gate_on_a_labelled_eval_set(checkpoint, tmp_path, monkeypatch):
    from kobert.checkpoint import shipped

    texts = json.loads((shipped("tokenizer").parent / "golden_inputs.json").read_text(encoding="utf-8"))["texts"]
    with runtimes.load(exported_reference(checkpoint, tmp_path), runtime="onnx") as rt:
        labels = rt.logits(texts).argmax(axis=-1)
    tsv = tmp_path / "eval.tsv"
    tsv.write_text("id\tdocument\tlabel\n" + "".join(f"{i}\t{t}\t{l}\n" for i, (t, l) in enumerate(zip(texts, labels))),
                   encoding="utf-8")
    result = export(checkpoint, tmp_path / "int8", targets="onnx-int8", tokenizer=shipped("tokenizer"), eval_set=tsv)
    task = result.report.artifacts["onnx-int8"].task
    assert task["measured_on"] == "labelled eval set eval.tsv" and task["examples"] == len(texts)
    assert task["fp32_accuracy"] == 1.0 and abs(task["accuracy_delta_points"]) <= 0.3
    # The same export with a gate no int8 model can meet fails, naming the accuracy.
    monkeypatch.setitem(parity.GATES, "int8", parity.ParityGate("int8", None, 0.999, task_gate=True,
                                                                max_accuracy_delta_points=-1.0))
    with pytest.raises(ParityFailure) as failure:
        export(checkpoint, tmp_path / "int8-strict", targets="onnx-int8", tokenizer=shipped("tokenizer"), eval_set=tsv)
    assert any("onnx-int8: task: accuracy" in line for line in failure.value.report.failures)


def exported_reference(checkpoint, tmp_path):
    from kobert.checkpoint import shipped

    return export(checkpoint, tmp_path / "fp32", targets="onnx", tokenizer=shipped("tokenizer")).out


def test_eval_set_needs_text_and_label_columns(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\tcomment\n1\t좋다\n", encoding="utf-8")
    with pytest.raises(ValueError, match="text column"):
        read_eval_set(bad)
