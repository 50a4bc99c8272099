"""Checkpoint loading: every accepted source, and a clear error for every bad one.

The reference is transformers itself: what we load must equal what
`AutoModel...from_pretrained` loads from the same files.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers
import transformers_reference

from kobert.canonical import CanonicalWeights, CheckpointError, weight_table
from kobert.checkpoint import init_checkpoint, load_checkpoint, summarize
from kobert.runtimes.torch import build_reference_model
from kobert.config import HEAD_SPECS, KoBertConfig, preset

TINY = preset("tiny")
HEADS = [("none", 0), ("sequence_classification", 2), ("sequence_classification", 3),
         ("token_classification", 5), ("question_answering", 2)]
AUTO = {head: transformers_reference.AUTO_CLASSES[spec.architecture] for head, spec in HEAD_SPECS.items()}


@pytest.mark.parametrize("head,labels", HEADS)
def test_hf_directory_matches_transformers(tmp_path, head, labels):
    path = init_checkpoint(TINY.with_head(head, labels), tmp_path / "ck", seed=3)
    loaded = load_checkpoint(path)
    theirs = {k: v.numpy() for k, v in AUTO[head].from_pretrained(path).state_dict().items()}
    ours = loaded.weights.to_hf_state_dict()
    if head == "none":
        ours = {k.removeprefix("bert."): v for k, v in ours.items()}
    for name, array in ours.items():
        np.testing.assert_array_equal(array, theirs[name], err_msg=name)
    assert loaded.config.head == head and loaded.config.num_labels == labels
    assert loaded.source["pad_token_id"] == 1


def test_pytorch_model_bin_is_read_without_unpickling_code(tmp_path):
    path = init_checkpoint(TINY.with_head("sequence_classification", 2), tmp_path / "st", seed=1)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    torch.save(model.state_dict(), bin_dir / "pytorch_model.bin")
    (bin_dir / "config.json").write_text((path / "config.json").read_text())
    a, b = load_checkpoint(path).weights, load_checkpoint(bin_dir).weights
    assert a.fingerprint() == b.fingerprint()


class Exploit:
    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_pickle_with_code_is_refused(tmp_path):
    bad = tmp_path / "evil.bin"
    torch.save({"x": Exploit()}, bad)
    with pytest.raises(CheckpointError, match="evil.bin"):
        load_checkpoint(bad)


def test_legacy_kobert_state_dict_maps_onto_hf_names(tmp_path):
    """pytorch_kobert_*.params: no `bert.` prefix, LayerNorm gamma/beta, no config.json."""
    config = KoBertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256)
    path = init_checkpoint(config, tmp_path / "hf", seed=5)
    model = transformers.AutoModel.from_pretrained(path)
    legacy = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
              for k, v in model.state_dict().items() if "position_ids" not in k}
    assert any(k.endswith("LayerNorm.gamma") for k in legacy) and not any(k.startswith("bert.") for k in legacy)
    params = tmp_path / "pytorch_kobert_2439f391a6.params"
    torch.save(legacy, params)
    loaded = load_checkpoint(params)
    assert loaded.source["kind"] == "legacy"
    assert loaded.config.num_hidden_layers == 2 and loaded.config.num_attention_heads == 2
    assert loaded.weights.fingerprint() == load_checkpoint(path).weights.fingerprint()


def test_truncated_safetensors_is_a_clear_error(tmp_path):
    path = init_checkpoint(TINY, tmp_path / "ck")
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated or corrupt"):
        load_checkpoint(path)


def test_corrupt_bin_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(TINY.to_json())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="pytorch_model.bin"):
        load_checkpoint(tmp_path)


def _rewrite(path, edit):
    from safetensors.numpy import load_file, save_file

    state = load_file(str(path / "model.safetensors"))
    edit(state)
    save_file(state, str(path / "model.safetensors"))


def test_wrong_shape_names_the_tensor(tmp_path):
    path = init_checkpoint(TINY, tmp_path / "ck")
    _rewrite(path, lambda s: s.update({"encoder.layer.1.attention.self.query.weight": np.zeros((16, 32), np.float32)}))
    with pytest.raises(CheckpointError, match=r"encoder\.layer\.1\.attention\.self\.query\.weight: shape \(16, 32\), config expects \(32, 32\)"):
        load_checkpoint(path)


def test_nan_is_refused(tmp_path):
    path = init_checkpoint(TINY, tmp_path / "ck")

    def poison(state):
        state["pooler.dense.bias"][3] = np.nan

    _rewrite(path, poison)
    with pytest.raises(CheckpointError, match="NaN or Inf"):
        load_checkpoint(path)


def test_missing_and_unexpected_tensors(tmp_path):
    path = init_checkpoint(TINY, tmp_path / "ck")
    _rewrite(path, lambda s: s.pop("embeddings.LayerNorm.bias"))
    with pytest.raises(CheckpointError, match="missing tensors: bert.embeddings.LayerNorm.bias"):
        load_checkpoint(path)
    path = init_checkpoint(TINY, tmp_path / "ck2")
    _rewrite(path, lambda s: s.update({"classifier.weight": np.zeros((2, 32), np.float32)}))
    with pytest.raises(CheckpointError, match="unexpected tensors.*classifier.weight"):
        load_checkpoint(path)


def test_integer_weights_are_refused(tmp_path):
    path = init_checkpoint(TINY, tmp_path / "ck")
    _rewrite(path, lambda s: s.update({"pooler.dense.bias": np.zeros(32, np.int32)}))
    with pytest.raises(CheckpointError, match="dtype int32"):
        load_checkpoint(path)


def test_unknown_head_is_a_clear_error(tmp_path):
    path = init_checkpoint(TINY, tmp_path / "ck")
    config = json.loads((path / "config.json").read_text())
    config["architectures"] = ["BertForMultipleChoice"]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unknown head architecture 'BertForMultipleChoice'"):
        load_checkpoint(path)


def test_missing_source_and_offline_hub_are_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such file or directory"):
        load_checkpoint(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_checkpoint(tmp_path / "empty")
    # This machine (and CI) cannot reach the hub: the real download code must fail cleanly.
    with pytest.raises(CheckpointError, match="skt/kobert-base-v1: could not fetch from the Hugging Face hub") as error:
        load_checkpoint("skt/kobert-base-v1")
    assert "\n" not in str(error.value)


def test_init_is_deterministic_and_base_is_kobert_base(tmp_path):
    a = load_checkpoint(init_checkpoint(TINY, tmp_path / "a", seed=7)).weights
    b = load_checkpoint(init_checkpoint(TINY, tmp_path / "b", seed=7)).weights
    c = load_checkpoint(init_checkpoint(TINY, tmp_path / "c", seed=8)).weights
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    base = preset("base")
    assert (base.vocab_size, base.hidden_size, base.num_hidden_layers, base.num_attention_heads,
            base.intermediate_size, base.max_position_embeddings, base.pad_token_id) == (8002, 768, 12, 12, 3072, 512, 1)
    # KoBERT-base's published parameter count (92.19M), computed from the table without building it.
    assert sum(int(np.prod(shape)) for _, _, shape, _ in weight_table(base)) == 92_186_880


def test_canonical_roundtrip_and_reference_model(tmp_path):
    loaded = load_checkpoint(init_checkpoint(TINY.with_head("question_answering", 2), tmp_path / "ck", seed=2))
    loaded.weights.save(tmp_path / "canonical")
    again = CanonicalWeights.load(tmp_path / "canonical")
    assert again.fingerprint() == loaded.weights.fingerprint()
    model = build_reference_model(again)
    assert type(model).__name__ == "BertForQuestionAnswering"
    summary = summarize(loaded)
    assert summary["parameters"] == sum(p.numel() for p in model.parameters())


def test_import_kobert_imports_no_framework():
    code = ("import sys, kobert, kobert.cli, kobert.parity, kobert.export, kobert.checkpoint, kobert.runtimes, kobert.exporters;"
            "bad = [m for m in ('torch', 'tensorflow', 'mxnet', 'onnxruntime', 'tf2onnx', 'transformers', 'onnx') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
