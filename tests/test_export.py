"""`kobert export` / `kobert parity`: the manifest contract, all-or-nothing output, failing hard.

Runs the ONNX target only (fast); parity_tests/ runs every framework.
"""

import hashlib
import json

import numpy as np
import onnxruntime
import pytest

import kobert.exporters.onnx as onnx_exporter
from kobert.canonical import CanonicalWeights, CheckpointError
from kobert.checkpoint import init_checkpoint
from kobert.cli import main
from kobert.config import preset
from kobert.export import ExportError, ParityFailure, export


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return init_checkpoint(preset("tiny").with_head("sequence_classification", 3), tmp_path_factory.mktemp("ck") / "ck", seed=11)


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    return export(checkpoint, tmp_path_factory.mktemp("out") / "export", targets="onnx").out


def test_manifest_contract(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert set(manifest) >= {"source", "tokenizer", "artifacts"}
    entry = manifest["artifacts"]["onnx"]
    assert entry["files"] == ["onnx/model.onnx"]
    assert [i["name"] for i in entry["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(i["dtype"] in ("int32", "int64", "float32") for i in entry["inputs"])
    assert entry["outputs"] == ["last_hidden_state", "pooler_output", "logits"]
    assert entry["opset"] >= 17 and entry["framework"].startswith("torch ")
    digest = hashlib.sha256((exported / "onnx/model.onnx").read_bytes()).hexdigest()
    assert entry["sha256"] == {"onnx/model.onnx": digest}
    assert entry["parity"]["passed"] is True
    parity = json.loads((exported / "parity.json").read_text())
    assert parity["passed"] is True and parity["artifacts"]["onnx"]["outputs"]["logits"]["max_abs"] <= 1e-4
    # Judged against the source read by transformers; the reference/ copy is its own line, bit-exact.
    assert parity["reference_source"].startswith("transformers' from_pretrained on the source folder")
    assert parity["artifacts"]["reference"]["checks"]["weights_equal_source"] == "ok"
    assert manifest["reference"]["parity"]["passed"] is True


def test_a_swapped_tensor_in_the_canonical_reading_fails_parity(checkpoint, tmp_path, monkeypatch):
    """Two same-shape tensors swapped while kobert reads the source: the artifacts and reference/ carry the
    error together, so only a judge that reads the source itself (transformers) can see it."""
    import kobert.checkpoint as reading

    real = reading.read_tensors
    query, key = (f"bert.encoder.layer.0.attention.self.{name}.weight" for name in ("query", "key"))

    def swapped(path):
        state = dict(real(path))
        state[query], state[key] = state[key], state[query]
        return state

    monkeypatch.setattr(reading, "read_tensors", swapped)
    with pytest.raises(ParityFailure) as failure:
        export(checkpoint, tmp_path / "out", targets="onnx")
    failures = failure.value.report.failures
    assert any(line.startswith("onnx.last_hidden_state: max-abs") for line in failures), failures
    assert (f"reference: weights_equal_source: 2 tensors of reference/ differ from the source's: {key}, {query}"
            in failures)
    assert not (tmp_path / "out").exists()


def test_plain_onnxruntime_from_manifest_matches_transformers(exported, checkpoint, transformers_reference):
    """What an acceptance check does: only manifest.json, plain onnxruntime, transformers as the judge."""
    manifest = json.loads((exported / "manifest.json").read_text())
    entry = manifest["artifacts"]["onnx"]
    session = onnxruntime.InferenceSession(str(exported / entry["files"][0]))
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 8002, size=(2, 37))
    mask = np.ones_like(ids)
    mask[1, 20:] = 0
    types = np.zeros_like(ids)
    types[:, 10:] = 1
    feed = {i["name"]: a.astype(i["dtype"]) for i, a in zip(entry["inputs"], (ids, mask, types))}
    got = dict(zip(entry["outputs"], session.run(entry["outputs"], feed)))
    want = transformers_reference.checkpoint_outputs(checkpoint, {"input_ids": ids, "attention_mask": mask,
                                                                 "token_type_ids": types})
    hidden, logits = want["last_hidden_state"], want["logits"]
    valid = mask.astype(bool)
    assert np.abs(got["last_hidden_state"][valid] - hidden[valid]).max() < 1e-4
    assert np.abs(got["logits"] - logits).max() < 1e-4


def test_parity_command_rechecks_and_detects_tampering(exported, checkpoint, tmp_path, capsys):
    assert main(["parity", str(exported)]) == 0
    assert "| onnx | onnx | logits |" in capsys.readouterr().out
    # Swap in the ONNX of a different model: the re-check must fail, loudly.
    import shutil

    tampered = tmp_path / "tampered"
    shutil.copytree(exported, tampered)
    other = init_checkpoint(preset("tiny").with_head("sequence_classification", 3), tmp_path / "other", seed=99)
    other_export = export(other, tmp_path / "other_export", targets="onnx").out
    shutil.copy(other_export / "onnx/model.onnx", tampered / "onnx/model.onnx")
    assert main(["parity", str(tampered)]) == 1
    assert "FAIL" in capsys.readouterr().out


def _perturbing_export(real_export, scale):
    def export_with_error(weights, export_dir):
        tensors = dict(weights.tensors)
        tensors["embeddings.norm.gamma"] = tensors["embeddings.norm.gamma"] * (1 + scale)
        return real_export(CanonicalWeights(weights.config, tensors), export_dir)
    return export_with_error


def test_out_of_tolerance_artifact_fails_the_export_and_leaves_nothing(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_exporter, "export", _perturbing_export(onnx_exporter.export, 1e-2))
    out = tmp_path / "dest"
    with pytest.raises(ParityFailure) as failure:
        export(checkpoint, out, targets="onnx")
    assert not failure.value.report.passed
    assert any("onnx.last_hidden_state: max-abs" in line for line in failure.value.report.failures)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [], "a staging folder was left behind"


def test_cli_export_failure_exit_code_and_table(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(onnx_exporter, "export", _perturbing_export(onnx_exporter.export, 1e-2))
    code = main(["export", str(checkpoint), "--to", "onnx", "--out", str(tmp_path / "dest")])
    captured = capsys.readouterr()
    assert code == 1
    assert "FAIL" in captured.out and "nothing was written" in captured.err
    assert not (tmp_path / "dest").exists()


def test_bad_inputs_end_in_clear_errors_and_no_partial_export(checkpoint, tmp_path, capsys):
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "config.json").write_text((checkpoint / "config.json").read_text())
    data = (checkpoint / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError):
        export(truncated, tmp_path / "dest", targets="onnx")
    assert main(["export", str(truncated), "--to", "onnx", "--out", str(tmp_path / "dest")]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    with pytest.raises(ExportError, match="unknown export target"):
        export(checkpoint, tmp_path / "dest", targets="onnx,caffe")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["truncated"]


def test_existing_destination_needs_force(checkpoint, exported, tmp_path):
    out = tmp_path / "dest"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(ExportError, match="not empty"):
        export(checkpoint, out, targets="onnx")
    assert (out / "keep.txt").read_text() == "user data"
    # --force replaces only an earlier export: a user's folder is refused and left as it was.
    with pytest.raises(ExportError, match="not a kobert export"):
        export(checkpoint, out, targets="onnx", force=True)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    previous = tmp_path / "previous"
    export(checkpoint, previous, targets="onnx")
    export(checkpoint, previous, targets="onnx", force=True)
    assert (previous / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "previous"]
