"""The acceptance path: a checkpoint of a shape the code has never seen, each artifact opened by its
plain framework using only manifest.json (no kobert import on the loading side), judged by transformers.
"""

import json
import os
import subprocess

import numpy as np
import pytest
import torch
import transformers

from kobert.checkpoint import init_checkpoint
from kobert.config import KoBertConfig
from kobert.export import export
from kobert.mxnet_env import find_mxnet_python

# Reads manifest.json, runs the MXNet artifact with plain SymbolBlock.imports, writes outputs.npz.
PLAIN_MXNET = r"""
import json, sys
import numpy as np
import mxnet as mx
export_dir, inputs_file, out_file = sys.argv[1:4]
entry = json.load(open(f"{export_dir}/manifest.json"))["artifacts"]["mxnet"]
symbol, params = (f"{export_dir}/{f}" for f in entry["files"])
net = mx.gluon.SymbolBlock.imports(symbol, [i["name"] for i in entry["inputs"]], params)
data = np.load(inputs_file)
outs = net(*[mx.nd.array(data[i["name"]], dtype=i["dtype"]) for i in entry["inputs"]])
outs = outs if isinstance(outs, (list, tuple)) else [outs]
np.savez(out_file, **{name: o.asnumpy() for name, o in zip(entry["outputs"], outs)})
"""

# Odd sizes everywhere, and a token-classification head.
UNSEEN = KoBertConfig(vocab_size=3001, hidden_size=60, num_hidden_layers=3, num_attention_heads=5,
                      intermediate_size=72, max_position_embeddings=96, type_vocab_size=2, layer_norm_eps=1e-6,
                      head="token_classification", num_labels=7)


@pytest.fixture(scope="module")
def unseen(tmp_path_factory):
    root = tmp_path_factory.mktemp("unseen")
    checkpoint = init_checkpoint(UNSEEN, root / "ck", seed=77)
    out = export(checkpoint, root / "export").out
    rng = np.random.default_rng(1)
    ids = rng.integers(0, UNSEEN.vocab_size, size=(4, 41))
    mask = np.ones_like(ids)
    mask[1, 30:] = 0
    mask[3, 2:] = 0
    types = np.zeros_like(ids)
    types[0, 20:] = 1
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    model = transformers.AutoModelForTokenClassification.from_pretrained(checkpoint, attn_implementation="eager").eval()
    with torch.no_grad():
        t = {k: torch.from_numpy(v) for k, v in inputs.items()}
        reference = {"last_hidden_state": model.bert(**t).last_hidden_state.numpy(), "logits": model(**t).logits.numpy()}
    return out, json.loads((out / "manifest.json").read_text()), inputs, reference


def assert_matches(outputs, reference, mask):
    valid = mask.astype(bool)
    assert set(outputs) == set(reference)
    for name, ref in reference.items():
        error = np.abs(outputs[name][valid] - ref[valid]).max()
        assert error <= 1e-4, f"{name}: max-abs {error:.2e}"


def feed(entry, inputs):
    return {i["name"]: inputs[i["name"]].astype(i["dtype"]) for i in entry["inputs"]}


@pytest.mark.parametrize("artifact", ["onnx", "tf2onnx"])
def test_plain_onnxruntime(unseen, artifact):
    import onnxruntime

    out, manifest, inputs, reference = unseen
    entry = manifest["artifacts"][artifact]
    session = onnxruntime.InferenceSession(str(out / entry["files"][0]))
    outputs = dict(zip(entry["outputs"], session.run(entry["outputs"], feed(entry, inputs))))
    assert_matches(outputs, reference, inputs["attention_mask"])


def test_plain_tensorflow(unseen):
    import tensorflow as tf

    out, manifest, inputs, reference = unseen
    entry = manifest["artifacts"]["tf"]
    signature = tf.saved_model.load(str(out / entry["files"][0])).signatures[entry["signature"]]
    outputs = {k: v.numpy() for k, v in signature(**{k: tf.constant(v) for k, v in feed(entry, inputs).items()}).items()}
    assert_matches(outputs, reference, inputs["attention_mask"])


def test_plain_mxnet_without_kobert(unseen, tmp_path):
    python = find_mxnet_python()
    if python is None:
        pytest.skip("no MXNet interpreter (bash ci/setup.sh creates .venv-mxnet)")
    out, manifest, inputs, reference = unseen
    np.savez(tmp_path / "inputs.npz", **inputs)
    (tmp_path / "plain.py").write_text(PLAIN_MXNET)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    check = subprocess.run([python, "-c", "import kobert"], cwd=tmp_path, env=env, capture_output=True)
    assert check.returncode != 0, "kobert must not be importable on the MXNet loading side"
    result = subprocess.run([python, str(tmp_path / "plain.py"), str(out), str(tmp_path / "inputs.npz"), str(tmp_path / "outputs.npz")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    with np.load(tmp_path / "outputs.npz") as outputs:
        assert_matches({k: outputs[k] for k in outputs.files}, reference, inputs["attention_mask"])
