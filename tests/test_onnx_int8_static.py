"""onnx-int8-static: ONNX Runtime static QDQ int8 (uint8 activations, int8 per-channel weights), calibrated
on the export's --eval-set, judged by the int8 gate and the task gate, loaded by plain onnxruntime."""

import dataclasses
import json

import numpy as np
import pytest

import transformers_reference
from kobert import runtimes
from kobert.checkpoint import init_checkpoint, shipped
from kobert.config import preset
from kobert.export import export

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

# A shape no code path was written for (as test_openvino's int8 tier): 3 heads of 16, 3 layers, an FFN of 80.
UNSEEN = dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=3, intermediate_size=80)
TEXTS = (json.loads((shipped("tokenizer").parent / "golden_inputs.json").read_text(encoding="utf-8"))["texts"]
         + (shipped("tokenizer").parent / "calibration_ko.txt").read_text(encoding="utf-8").splitlines()[:18])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = dataclasses.replace(preset("tiny"), **UNSEEN).with_head("sequence_classification", 2)
    return init_checkpoint(config, tmp_path_factory.mktemp("static") / "ck", seed=7)


def encoded(texts):
    from transformers import AutoTokenizer

    return dict(AutoTokenizer.from_pretrained(str(shipped("tokenizer")))(texts, padding=True, return_tensors="np"))


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("static")
    # Labels from transformers itself (fp32), not from any kobert runtime.
    labels = transformers_reference.outputs(transformers_reference.load(checkpoint), encoded(TEXTS))["logits"].argmax(-1)
    tsv = root / "eval.tsv"
    tsv.write_text("id\tdocument\tlabel\n" + "".join(f"{i}\t{t}\t{l}\n" for i, (t, l) in enumerate(zip(TEXTS, labels))),
                   encoding="utf-8")
    result = export(checkpoint, root / "export", targets=["onnx", "onnx-int8-static"], tokenizer=shipped("tokenizer"),
                    eval_set=tsv)
    return result, labels


def test_static_qdq_graph_loads_in_plain_onnxruntime_close_to_transformers(exported, checkpoint):
    result, _ = exported
    entry = result.manifest["artifacts"]["onnx-int8-static"]
    assert entry["files"] == ["onnx-int8-static/model.onnx"] and entry["tier"] == "int8"
    path = result.out / entry["files"][0]
    model = onnx.load(str(path))
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    dequantized = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    weights = [n for n in dequantized if initializers.get(n.input[0], np.zeros(0, np.uint8)).dtype == np.int8]
    per_channel = [n for n in weights if initializers[n.input[1]].size > 1]
    assert len(per_channel) >= 6 * UNSEEN["num_hidden_layers"], "Q, K, V, output and both FFN weights, per channel"
    activations = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert activations and all(initializers[n.input[2]].dtype == np.uint8 for n in activations)  # U8S8
    gathers = [n for n in model.graph.node if n.op_type == "Gather" and n.input[0] in initializers]
    assert gathers and all(initializers[n.input[0]].dtype == np.float32 for n in gathers), "embeddings stay float"

    ids = np.random.default_rng(3).integers(5, 8002, size=(4, 21))
    # [CLS] first and [SEP] last, as every encoded text: the pooler reads position 0, and its input's static
    # scale comes from [CLS] rows (with a random first token the pooled cosine measured 0.977, not 0.9997).
    ids[:, 0], ids[:, -1] = 2, 3
    inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    plain = dict(zip(entry["outputs"], session.run(entry["outputs"], inputs)))
    with runtimes.load(result.out, runtime="onnx", artifact="onnx-int8-static") as runtime:
        ours = runtime.run(**inputs)
    np.testing.assert_array_equal(ours["pooler_output"], plain["pooler_output"])
    pooled = plain["pooler_output"]
    reference = transformers_reference.outputs(transformers_reference.load(checkpoint), inputs)["pooler_output"]
    cosine = (pooled * reference).sum(-1) / np.linalg.norm(pooled, axis=-1) / np.linalg.norm(reference, axis=-1)
    assert cosine.min() > 0.99 and np.abs(pooled - reference).max() > 1e-6  # close to fp32, not fp32


def test_calibrated_on_the_eval_set_and_judged_by_the_task_gate(exported):
    result, labels = exported
    quantization = result.manifest["artifacts"]["onnx-int8-static"]["quantization"]
    assert quantization["source"] == "eval set eval.tsv" and quantization["rows"] == len(TEXTS)
    assert quantization["activation_type"] == "uint8" and quantization["weight_type"] == "int8"
    report = result.report.artifacts["onnx-int8-static"]
    assert report.gate.tier == "int8" and result.report.passed
    assert report.task["measured_on"] == "labelled eval set eval.tsv" and abs(report.task["accuracy_delta_points"]) <= 0.3
    session = onnxruntime.InferenceSession(str(result.out / "onnx-int8-static" / "model.onnx"))
    feed = encoded(TEXTS)
    plain_labels = session.run(["logits"], {i.name: feed[i.name] for i in session.get_inputs()})[0].argmax(-1)
    assert (plain_labels == labels).all()  # what the gate reports, counted without kobert


def test_runtime_auto_considers_the_static_tier(exported, tmp_path, monkeypatch):
    from kobert.runtimes import auto

    monkeypatch.setenv("KOBERT_CACHE_DIR", str(tmp_path / "cache"))
    result, _ = exported
    assert auto.candidates(result.out) == ["onnx", "onnx-int8-static"]
    choice = auto.choose(result.out, shape=(2, 16))
    timings = json.loads((tmp_path / "cache" / auto.CACHE_FILE).read_text()).popitem()[1]["timings_s"]
    assert sorted(timings) == ["onnx", "onnx-int8-static"] and choice.artifact == min(timings, key=timings.get)


class RecordsCalibration:
    """A throwaway calibrated target (built from nothing): keeps the calibration `kobert bench` hands it."""

    received = []

    def export(self, weights, export_dir, calibration):
        from kobert.exporters import ExportedArtifact

        self.received.append(calibration)
        return ExportedArtifact("throwaway-calibrated", [], [], [], "nothing")


records_calibration = RecordsCalibration()


def test_kobert_bench_exports_calibrated_tiers_with_korean_calibration(tmp_path, monkeypatch):
    from kobert import registry
    from kobert.bench import run
    from kobert.bench.tables import BenchResult
    from kobert.calibration import sample_texts
    from kobert.checkpoint import load_checkpoint

    monkeypatch.setitem(registry.TARGETS, "throwaway-calibrated", registry.Target(
        "throwaway-calibrated", "test_onnx_int8_static:records_calibration", "onnx", calibrated=True))
    weights = load_checkpoint(init_checkpoint(preset("tiny"), tmp_path / "ck", seed=1)).weights
    result = BenchResult("tiny", weights.config, 1, 1)
    manifest = run._export_all(weights, tmp_path / "export", ["throwaway-calibrated"], result)
    assert "throwaway-calibrated" in manifest["artifacts"], result.notes
    (calibration,) = RecordsCalibration.received
    assert calibration.source == "golden texts + assets/calibration_ko.txt"
    # The first sample sentence, encoded by transformers' tokenizer, is among the rows (after the golden texts).
    golden = len(json.loads((shipped("tokenizer").parent / "golden_inputs.json").read_text(encoding="utf-8"))["texts"])
    want = encoded([sample_texts()[0]])["input_ids"]
    np.testing.assert_array_equal(calibration.items[golden]["input_ids"], want)
