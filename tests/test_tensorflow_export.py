"""The native TensorFlow KoBERT and its tf2onnx conversion, checked against transformers.

The reference is Hugging Face's PyTorch `BertModel` / `BertFor...` in eval mode
with eager attention, built from a random config (no hub access). Weights are
re-drawn so every LayerNorm, bias and attention pattern is non-trivial: with
HF's default init (LayerNorm 1/0, biases 0, std 0.02) attention is nearly
uniform and a wrong scale or a missed bias would hide.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

import transformers_reference  # noqa: E402  (the shared independent reference)

from kobert.canonical import CanonicalWeights  # noqa: E402
from kobert.config import KoBertConfig, preset  # noqa: E402
from kobert.exporters import tensorflow as tf_exporter  # noqa: E402
from kobert.exporters import tf2onnx as tf2onnx_exporter  # noqa: E402

# Agreed parity bound; the measured figures are ~1e-6 (tiny) and ~1e-5 (base).
ATOL = 1e-4

HEADS = [("none", 0), ("sequence_classification", 2), ("sequence_classification", 3),
         ("token_classification", 5), ("question_answering", 2)]


# --- the reference: transformers ---------------------------------------------------


@dataclass
class Reference:
    config: KoBertConfig
    model: torch.nn.Module  # BertModel or BertFor...
    weights: CanonicalWeights

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = transformers_reference.outputs(self.model, inputs)
        assert list(out) == list(self.config.output_names)
        return out


def _redraw(module: torch.nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif "embeddings" in name:
                p.copy_(noise)
            else:  # Linear (out, in): unit-scale activations, so attention is far from uniform
                p.copy_(noise / math.sqrt(p.shape[1]))


def build_reference(config: KoBertConfig, seed: int = 0) -> Reference:
    hf_config = transformers.BertConfig(**config.to_hf_dict())
    model = transformers_reference.AUTO_CLASSES[config.head_spec.architecture].from_config(hf_config, attn_implementation="eager").eval()
    _redraw(model, torch.Generator().manual_seed(seed))
    prefix = "bert." if config.head == "none" else ""  # canonical names are BertFor...'s
    state = {prefix + k: v.numpy() for k, v in model.state_dict().items()}
    return Reference(config, model, CanonicalWeights.from_hf_state_dict(config, state))


def make_inputs(lengths: list[int], total: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Right-padded batch: ids < 8002 starting with [CLS]=2, pad id 1, segment B from mid-sequence."""
    rng = np.random.default_rng(seed)
    batch = len(lengths)
    ids = rng.integers(4, 8002, (batch, total))
    mask = np.zeros((batch, total), np.int64)
    types = np.zeros((batch, total), np.int64)
    for row, n in enumerate(lengths):
        ids[row, 0] = 2
        ids[row, n:] = 1
        mask[row, :n] = 1
        types[row, (n + 1) // 2:n] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


GOLDEN = {
    "one_token": make_inputs([1], 1),
    "padded_batch": make_inputs([17, 9, 1], 17, seed=1),
    "long": make_inputs([512, 300], 512, seed=2),
}


def max_errors(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, float]:
    """Max-abs error per output: hidden states on attended positions only, the rest in full."""
    errors = {}
    for name, expected in ref.items():
        actual = np.asarray(got[name])
        assert actual.shape == expected.shape, f"{name}: shape {actual.shape}, reference {expected.shape}"
        if name == "last_hidden_state":
            actual, expected = actual[mask.astype(bool)], expected[mask.astype(bool)]
        errors[name] = float(np.max(np.abs(actual - expected)))
    return errors


def assert_close(got, ref, mask, label=""):
    errors = max_errors(got, ref, mask)
    print(label, {k: f"{v:.2e}" for k, v in errors.items()})
    bad = {k: v for k, v in errors.items() if not v <= ATOL}
    assert not bad, f"{label}: max-abs error above {ATOL}: {bad}"


# --- fixtures: one reference + one export per head, shared by the module -----------------


@dataclass
class Exported:
    reference: Reference
    export_dir: object
    tf_artifact: object
    onnx_artifact: object


@pytest.fixture(scope="module", params=HEADS, ids=[f"{h}-{n}" for h, n in HEADS])
def exported(request, tmp_path_factory):
    head, labels = request.param
    config = preset("tiny").with_head(head, labels)
    reference = build_reference(config, seed=HEADS.index(request.param))
    export_dir = tmp_path_factory.mktemp(f"tf-{head}-{labels}")
    tf_artifact = tf_exporter.export(reference.weights, export_dir)
    onnx_artifact = tf2onnx_exporter.export(reference.weights, export_dir)
    # The minimum of a manifest the runtimes read (the full one is the export driver's).
    from kobert.export import sha256_tree

    entries = {a.name: {**a.manifest_entry(), "sha256": {k: v for f in a.files for k, v in sha256_tree(export_dir, f).items()}}
               for a in (tf_artifact, onnx_artifact)}
    manifest = {"config": config.to_hf_dict(), "artifacts": entries}
    (export_dir / "manifest.json").write_text(json.dumps(manifest))
    return Exported(reference, export_dir, tf_artifact, onnx_artifact)


def run_savedmodel(path, inputs):
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    return {k: v.numpy() for k, v in signature(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def run_onnx(path, inputs):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, inputs)))


# --- the TensorFlow SavedModel -----------------------------------------------------------


@pytest.mark.parametrize("case", list(GOLDEN))
def test_savedmodel_matches_transformers(exported, case):
    inputs = GOLDEN[case]
    got = run_savedmodel(exported.export_dir / "tf", inputs)
    assert set(got) == set(exported.reference.config.output_names)
    assert_close(got, exported.reference(inputs), inputs["attention_mask"], f"tf {case}")


def test_artifact_entry(exported):
    config = exported.reference.config
    art = exported.tf_artifact
    assert art.name == "tf" and art.files == ["tf"]
    assert [i["name"] for i in art.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert {i["dtype"] for i in art.inputs} == {"int64"}
    assert art.outputs == list(config.output_names)
    assert art.framework == f"tensorflow {tf.__version__}"
    assert art.extra == {"signature": "serving_default"}


def test_savedmodel_signature_and_variables(exported):
    loaded = tf.saved_model.load(str(exported.export_dir / "tf"))
    assert list(loaded.signatures) == ["serving_default"]
    signature = loaded.signatures["serving_default"]
    _, specs = signature.structured_input_signature
    assert {name: (spec.dtype, tuple(spec.shape)) for name, spec in specs.items()} == {
        name: (tf.int64, (None, None)) for name in ("input_ids", "attention_mask", "token_type_ids")}
    assert set(signature.structured_outputs) == set(exported.reference.config.output_names)
    # Weights live in the checkpoint as variables, one per canonical tensor, not folded constants.
    weights = exported.reference.weights
    assert len(signature.variables) == len(weights.tensors)
    assert sum(int(np.prod(v.shape)) for v in signature.variables) == weights.num_parameters


def test_fully_padded_row_matches_transformers(exported):
    # HF's additive mask is (1 - mask) * float32.min: an all-zero row attends uniformly, no NaN.
    inputs = make_inputs([6, 6], 6, seed=3)
    inputs["attention_mask"][1] = 0
    got = run_savedmodel(exported.export_dir / "tf", inputs)
    ref = exported.reference(inputs)
    assert all(np.isfinite(v).all() for v in got.values())
    errors = {k: float(np.max(np.abs(got[k] - ref[k]))) for k in ref}
    assert max(errors.values()) <= ATOL, errors


def test_savedmodel_loads_without_kobert(tmp_path):
    """The artifact is plain TensorFlow: a fresh interpreter that cannot import kobert runs it."""
    reference = build_reference(preset("tiny").with_head("sequence_classification", 3), seed=7)
    tf_exporter.export(reference.weights, tmp_path)
    inputs = GOLDEN["padded_batch"]
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["kobert"] = None  # any import of kobert now fails
        import numpy as np, tensorflow as tf
        inputs = dict(np.load({str(tmp_path / "inputs.npz")!r}))
        signature = tf.saved_model.load({str(tmp_path / "tf")!r}).signatures["serving_default"]
        out = signature(**{{k: tf.constant(v) for k, v in inputs.items()}})
        np.savez({str(tmp_path / "outputs.npz")!r}, **{{k: v.numpy() for k, v in out.items()}})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    got = dict(np.load(tmp_path / "outputs.npz"))
    assert_close(got, reference(inputs), inputs["attention_mask"], "tf (no kobert)")


def test_tensorflow_runtime(exported):
    from kobert.runtimes.tensorflow import TensorFlowRuntime

    runtime = TensorFlowRuntime(exported.export_dir)
    inputs = GOLDEN["padded_batch"]
    # int32 ids from a caller are cast to the SavedModel's int64.
    got = runtime.run(**{k: v.astype(np.int32) for k, v in inputs.items()})
    assert list(got) == list(exported.reference.config.output_names)
    assert all(v.dtype == np.float32 for v in got.values())
    assert_close(got, exported.reference(inputs), inputs["attention_mask"], "tf runtime")


def test_tf2onnx_through_onnx_runtime(exported):
    import kobert.runtimes

    runtime = kobert.runtimes.load(exported.export_dir, runtime="onnx", artifact="tf2onnx")
    inputs = GOLDEN["padded_batch"]
    got = runtime.run(**inputs)
    assert list(got) == list(exported.reference.config.output_names)
    assert_close(got, exported.reference(inputs), inputs["attention_mask"], "tf2onnx runtime")


def test_layer_norm_and_gelu_are_exact():
    x = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32) * 3
    gamma, beta = np.linspace(0.5, 1.5, 8, dtype=np.float32), np.linspace(-1, 1, 8, dtype=np.float32)
    expected_ln = torch.nn.functional.layer_norm(torch.from_numpy(x), (8,), torch.from_numpy(gamma),
                                                 torch.from_numpy(beta), eps=1e-12).numpy()
    np.testing.assert_allclose(tf_exporter.layer_norm(tf.constant(x), gamma, beta, 1e-12).numpy(), expected_ln, atol=2e-6)
    expected_gelu = torch.nn.functional.gelu(torch.from_numpy(x), approximate="none").numpy()
    np.testing.assert_allclose(tf_exporter.gelu(tf.constant(x)).numpy(), expected_gelu, atol=1e-6)


# --- tf2onnx ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(GOLDEN))
def test_tf2onnx_matches_transformers(exported, case):
    inputs = GOLDEN[case]
    got = run_onnx(exported.export_dir / "tf2onnx" / "model.onnx", inputs)
    assert_close(got, exported.reference(inputs), inputs["attention_mask"], f"tf2onnx {case}")


def test_tf2onnx_model_is_standard_onnx(exported):
    path = exported.export_dir / exported.onnx_artifact.files[0]
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ops = {node.op_type for node in model.graph.node}
    assert "Erf" in ops and "Erfc" not in ops
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx"}
    opset = {o.domain: o.version for o in model.opset_import}
    assert opset.get("", opset.get("ai.onnx")) == exported.onnx_artifact.extra["opset"] >= 17

    # onnxruntime sees exactly kobert's names, in call order.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in session.get_outputs()] == list(exported.reference.config.output_names)
    art = exported.onnx_artifact
    assert art.name == "tf2onnx" and art.files == ["tf2onnx/model.onnx"]
    assert art.inputs == exported.tf_artifact.inputs and art.outputs == exported.tf_artifact.outputs


def test_tf_gelu_converts_to_erfc_which_onnx_lacks(tmp_path):
    """Why kobert writes GELU with tf.math.erf: TF 2.21's tf.nn.gelu becomes an invalid Erfc node."""
    import tf2onnx

    spec = [tf.TensorSpec([None, 8], tf.float32, name="x")]
    x = np.linspace(-4, 4, 16, dtype=np.float32).reshape(2, 8)

    @tf.function(input_signature=spec)
    def builtin_gelu(x):
        return tf.nn.gelu(x, approximate=False)

    model, _ = tf2onnx.convert.from_function(builtin_gelu, input_signature=spec, opset=17)
    assert "Erfc" in {node.op_type for node in model.graph.node}
    with pytest.raises(onnx.checker.ValidationError, match="Erfc"):
        onnx.checker.check_model(model)
    with pytest.raises(tf2onnx_exporter.ConversionError, match="Erfc"):
        tf2onnx_exporter.validate(model, "builtin_gelu")

    @tf.function(input_signature=spec)
    def written_gelu(x):
        return tf_exporter.gelu(x)

    model, _ = tf2onnx.convert.from_function(written_gelu, input_signature=spec, opset=17)
    tf2onnx_exporter.validate(model, "written_gelu")
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    expected = torch.nn.functional.gelu(torch.from_numpy(x), approximate="none").numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_tf2onnx_needs_the_savedmodel(tmp_path):
    weights = build_reference(preset("tiny"), seed=1).weights
    with pytest.raises(FileNotFoundError, match="export the 'tf' artifact first"):
        tf2onnx_exporter.export(weights, tmp_path)


# --- KoBERT-base scale ------------------------------------------------------------------


@pytest.mark.slow
def test_base_scale_tf_and_tf2onnx(tmp_path):
    config = preset("base").with_head("sequence_classification", 2)
    reference = build_reference(config, seed=11)
    tf_exporter.export(reference.weights, tmp_path)
    tf2onnx_exporter.export(reference.weights, tmp_path)
    inputs = make_inputs([128, 77], 128, seed=5)
    ref = reference(inputs)
    assert_close(run_savedmodel(tmp_path / "tf", inputs), ref, inputs["attention_mask"], "tf base")
    assert_close(run_onnx(tmp_path / "tf2onnx" / "model.onnx", inputs), ref, inputs["attention_mask"], "tf2onnx base")
