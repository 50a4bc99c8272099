"""The MXNet spoke: Gluon export + MXNet runtime against transformers (the independent reference).

MXNet 1.9.1 lives in its own interpreter (`kobert.mxnet_env`); these tests run in
the main venv, export through the MXNet subprocess and run through the MXNet
runtime's worker. One export and one worker per head (module-scope fixtures).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from kobert.canonical import CanonicalWeights
from kobert.config import preset
from kobert.canonical import weight_table
from kobert.mxnet_env import PACKAGE_DIR, find_mxnet_python, mxnet_subprocess_env

MXNET_PYTHON = find_mxnet_python()
pytestmark = pytest.mark.skipif(
    MXNET_PYTHON is None, reason="no MXNet interpreter (run `bash ci/setup.sh` or set KOBERT_MXNET_PYTHON)"
)
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import transformers_reference  # noqa: E402  (the shared independent reference)

from kobert.exporters import mxnet as mxnet_exporter  # noqa: E402  (imports no mxnet)

# float32 end to end; transformers and MXNet differ only in summation order (~1e-6).
ATOL = 1e-4
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
HEADS = [
    ("none", 0),
    ("sequence_classification", 2),
    ("sequence_classification", 3),
    ("token_classification", 5),
    ("question_answering", 2),
]
HEAD_IDS = [f"{head}-{labels}" for head, labels in HEADS]


# --- the reference: transformers, built from scratch (no hub) ----------------------


def reference_model(cfg, seed: int = 0, initializer_range: float = 0.1):
    """A transformers model for cfg in eval mode, with every LayerNorm and bias randomised.

    At transformers' default init (std 0.02) a tiny model's attention is almost
    uniform, so a dropped mask or scale would move outputs by only ~1e-3; std 0.1
    gives peaked attention, where such bugs are far outside the tolerance.
    """
    torch.manual_seed(seed)
    hf_config = transformers.BertConfig(**cfg.to_hf_dict(), attn_implementation="eager")
    hf_config.initializer_range = initializer_range
    model_class = getattr(transformers, cfg.to_hf_dict()["architectures"][0])
    model = model_class(hf_config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            # transformers initialises these to 1 and 0, which would hide swapped gamma/beta or a missing bias.
            if "LayerNorm" in name or name.endswith("bias"):
                param.add_(torch.randn_like(param) * 0.2)
    return model.eval()


def canonical_weights(model, cfg) -> CanonicalWeights:
    # A bare BertModel names its tensors without the "bert." prefix that the BertFor... models use.
    prefix = "bert." if cfg.head == "none" else ""
    state = {prefix + k: v.detach().numpy() for k, v in model.state_dict().items()}
    return CanonicalWeights.from_hf_state_dict(cfg, state)


def reference_outputs(model, cfg, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return transformers_reference.outputs(model, {name: inputs[name] for name in INPUT_NAMES})


def export_with_manifest(weights: CanonicalWeights, export_dir):
    from kobert.export import sha256_tree

    artifact = mxnet_exporter.export(weights, export_dir)
    entry = {**artifact.manifest_entry(), "sha256": {k: v for f in artifact.files for k, v in sha256_tree(export_dir, f).items()}}
    manifest = {"config": weights.config.to_hf_dict(), "tokenizer": None, "artifacts": {"mxnet": entry}}
    (export_dir / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return artifact


def make_inputs(lengths: list[int], total: int, vocab: int, seed: int) -> dict[str, np.ndarray]:
    """Right-padded rows: ids < vocab (pad id 1 at padding), token types 0 then 1, mask 1 then 0."""
    rng = np.random.default_rng(seed)
    batch = len(lengths)
    ids = np.full((batch, total), 1, dtype=np.int64)
    mask = np.zeros((batch, total), dtype=np.int64)
    types = np.zeros((batch, total), dtype=np.int64)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(4, vocab, length)
        ids[row, 0] = 2  # [CLS]
        mask[row, :length] = 1
        types[row, length // 2:length] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


CASES = {
    "batch1-len1": make_inputs([1], 1, 8002, seed=1),
    "batch3-len1": make_inputs([1, 1, 1], 1, 8002, seed=2),
    "batch3-padded": make_inputs([23, 11, 1], 23, 8002, seed=3),
    "batch1-len96": make_inputs([96], 96, 8002, seed=4),
    "batch3-len40-padded": make_inputs([40, 40, 7], 40, 8002, seed=5),
}


def max_abs_errors(got: dict, ref: dict, mask: np.ndarray) -> dict[str, float]:
    """Hidden states on valid positions only (padded ones are unspecified); everything else fully."""
    valid = mask.astype(bool)
    errors = {}
    for name, expected in ref.items():
        assert got[name].shape == expected.shape, f"{name}: shape {got[name].shape}, expected {expected.shape}"
        assert got[name].dtype == np.float32, f"{name}: dtype {got[name].dtype}"
        if name == "last_hidden_state":
            errors[name] = float(np.abs(got[name][valid] - expected[valid]).max())
        else:
            errors[name] = float(np.abs(got[name] - expected).max())
    return errors


# --- fixtures: one export + one worker per head --------------------------------------


@pytest.fixture(scope="module", params=HEADS, ids=HEAD_IDS)
def exported(request, tmp_path_factory):
    head, labels = request.param
    cfg = preset("tiny").with_head(head, labels)
    model = reference_model(cfg)
    weights = canonical_weights(model, cfg)
    export_dir = tmp_path_factory.mktemp(f"mxnet-{head}-{labels}")
    artifact = export_with_manifest(weights, export_dir)
    from kobert.runtimes.mxnet import MXNetRuntime

    runtime = MXNetRuntime(export_dir)
    yield {"cfg": cfg, "model": model, "dir": export_dir, "artifact": artifact, "runtime": runtime}
    runtime.close()


# --- tests -----------------------------------------------------------------------


def test_manifest_entry(exported):
    cfg, artifact = exported["cfg"], exported["artifact"]
    assert artifact.name == "mxnet"
    assert artifact.files == ["mxnet/kobert-symbol.json", "mxnet/kobert-0000.params"]
    assert [spec["name"] for spec in artifact.inputs] == list(INPUT_NAMES)
    assert all(spec["dtype"] == "float32" for spec in artifact.inputs)
    assert artifact.outputs == list(cfg.output_names)
    assert artifact.framework.startswith("mxnet 1.")
    for name in artifact.files:
        assert (exported["dir"] / name).stat().st_size > 0
    symbol = json.loads((exported["dir"] / artifact.files[0]).read_text())
    variables = {node["name"] for node in symbol["nodes"] if node["op"] == "null"}
    assert set(INPUT_NAMES) <= variables
    assert len(symbol["heads"]) == len(cfg.output_names)


@pytest.mark.parametrize("case", list(CASES))
def test_parity_with_transformers(exported, case):
    inputs = CASES[case]
    got = exported["runtime"].run(**inputs)
    assert list(got) == list(exported["cfg"].output_names)
    ref = reference_outputs(exported["model"], exported["cfg"], inputs)
    errors = max_abs_errors(got, ref, inputs["attention_mask"])
    assert max(errors.values()) <= ATOL, errors


def test_padding_is_masked(exported):
    """Changing ids and token types at padded positions leaves every valid output unchanged."""
    cfg, runtime = exported["cfg"], exported["runtime"]
    inputs = CASES["batch3-padded"]
    padded = inputs["attention_mask"] == 0
    assert padded.any()
    changed = {name: array.copy() for name, array in inputs.items()}
    changed["input_ids"][padded] = np.random.default_rng(9).integers(4, cfg.vocab_size, padded.sum())
    changed["token_type_ids"][padded] = 1
    before, after = runtime.run(**inputs), runtime.run(**changed)
    valid = ~padded
    per_token = {"last_hidden_state", "start_logits", "end_logits"} | ({"logits"} if cfg.head == "token_classification" else set())
    for name in before:  # per-token outputs on valid positions, per-sequence ones fully
        a, b = (after[name][valid], before[name][valid]) if name in per_token else (after[name], before[name])
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg=name)
    # The same rows, unpadded and one at a time, agree with the padded batch.
    for row, length in enumerate(inputs["attention_mask"].sum(axis=1)):
        alone = runtime.run(**{name: array[row:row + 1, :length] for name, array in inputs.items()})
        np.testing.assert_allclose(alone["last_hidden_state"][0], before["last_hidden_state"][row, :length], rtol=0, atol=1e-5)
        if cfg.has_pooler:
            np.testing.assert_allclose(alone["pooler_output"][0], before["pooler_output"][row], rtol=0, atol=1e-5)
    # ...and the test has teeth: a change at a valid position does change the outputs.
    touched = {name: array.copy() for name, array in inputs.items()}
    touched["input_ids"][0, 1] = (touched["input_ids"][0, 1] + 1) % cfg.vocab_size
    assert np.abs(runtime.run(**touched)["last_hidden_state"][0, 0] - before["last_hidden_state"][0, 0]).max() > 1e-4


def test_mask_ignored_would_be_caught(exported):
    """The reference itself depends on the mask here, so parity proves the mask is applied."""
    cfg, model = exported["cfg"], exported["model"]
    inputs = CASES["batch3-padded"]
    unmasked = dict(inputs, attention_mask=np.ones_like(inputs["attention_mask"]))
    ref, ref_unmasked = reference_outputs(model, cfg, inputs), reference_outputs(model, cfg, unmasked)
    valid = inputs["attention_mask"].astype(bool)
    hidden, hidden_unmasked = ref["last_hidden_state"][valid], ref_unmasked["last_hidden_state"][valid]
    assert np.abs(hidden - hidden_unmasked).max() > 100 * ATOL


# --- plain MXNet: the artifact needs no kobert ---------------------------------------

PLAIN_IMPORTS = textwrap.dedent("""
    import importlib.util, sys
    import mxnet as mx, numpy as np
    assert importlib.util.find_spec("kobert") is None, "kobert must not be importable here"
    symbol_file, params_file, inputs_file, outputs_file = sys.argv[1:]
    net = mx.gluon.SymbolBlock.imports(symbol_file, ["input_ids", "attention_mask", "token_type_ids"], params_file)
    with np.load(inputs_file) as z:
        args = [mx.nd.array(z[name], dtype="float32") for name in ("input_ids", "attention_mask", "token_type_ids")]
    outputs = net(*args)
    if isinstance(outputs, mx.nd.NDArray):
        outputs = [outputs]
    np.savez(outputs_file, *[o.asnumpy() for o in outputs])
""")


def plain_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return env


def test_plain_symbolblock_imports_without_kobert(exported, tmp_path):
    cfg, artifact, export_dir = exported["cfg"], exported["artifact"], exported["dir"]
    inputs = CASES["batch3-padded"]
    np.savez(tmp_path / "inputs.npz", **inputs)
    (tmp_path / "plain.py").write_text(PLAIN_IMPORTS)
    symbol_file, params_file = (str(export_dir / name) for name in artifact.files)
    proc = subprocess.run(
        [MXNET_PYTHON, str(tmp_path / "plain.py"), symbol_file, params_file,
         str(tmp_path / "inputs.npz"), str(tmp_path / "outputs.npz")],
        cwd=tmp_path, env=plain_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(tmp_path / "outputs.npz") as z:
        got = {name: z[f"arr_{i}"] for i, name in enumerate(cfg.output_names)}
        assert len(z.files) == len(cfg.output_names)
    ref = reference_outputs(exported["model"], cfg, inputs)
    errors = max_abs_errors(got, ref, inputs["attention_mask"])
    assert max(errors.values()) <= ATOL, errors


# --- the runtime: in-process path, worker lifecycle and errors ----------------------

IN_PROCESS = textwrap.dedent("""
    import sys
    import numpy as np
    import kobert.runtimes
    export_dir, inputs_file, outputs_file = sys.argv[1:]
    runtime = kobert.runtimes.load(export_dir, runtime="mxnet")
    assert runtime._worker is None and runtime._block is not None, "expected the in-process SymbolBlock"
    with np.load(inputs_file) as z:
        outputs = runtime.run(**{name: z[name] for name in z.files})
    runtime.close()
    np.savez(outputs_file, **outputs)
""")


def test_runtime_in_process_where_mxnet_imports(exported, tmp_path):
    inputs = CASES["batch3-padded"]
    np.savez(tmp_path / "inputs.npz", **inputs)
    (tmp_path / "in_process.py").write_text(IN_PROCESS)
    # kobert installed where mxnet imports: the whole package (this checkout) on the MXNet interpreter's path.
    env = dict(plain_env(), PYTHONPATH=str(PACKAGE_DIR.parent))
    proc = subprocess.run(
        [MXNET_PYTHON, "-s", str(tmp_path / "in_process.py"), str(exported["dir"]), str(tmp_path / "inputs.npz"),
         str(tmp_path / "outputs.npz")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    worker = exported["runtime"].run(**inputs)
    with np.load(tmp_path / "outputs.npz") as z:
        assert sorted(z.files) == sorted(worker)
        for name in worker:
            np.testing.assert_allclose(z[name], worker[name], rtol=0, atol=1e-6)


def test_runtime_load_and_close_ends_the_worker(tmp_path_factory):
    import kobert.runtimes

    cfg = preset("tiny")
    weights = canonical_weights(reference_model(cfg, seed=3), cfg)
    export_dir = tmp_path_factory.mktemp("mxnet-lifecycle")
    export_with_manifest(weights, export_dir)
    with kobert.runtimes.load(export_dir, runtime="mxnet") as runtime:
        process = runtime._worker.process
        assert process.poll() is None
        out = runtime.run([2, 100, 3])
        assert out["last_hidden_state"].shape == (1, 3, cfg.hidden_size)
    assert process.wait(timeout=30) == 0
    with pytest.raises(RuntimeError, match="closed"):
        runtime.run([2, 100, 3])
    # A worker that dies mid-session gives a clear error, not a hang.
    runtime = kobert.runtimes.load(export_dir, runtime="mxnet")
    runtime._worker.process.kill()
    runtime._worker.process.wait()
    with pytest.raises(RuntimeError, match="MXNet worker"):
        runtime.run([2, 100, 3])
    runtime.close()
    # A dropped runtime does not leak its worker.
    runtime = kobert.runtimes.load(export_dir, runtime="mxnet")
    process = runtime._worker.process
    del runtime
    import gc

    gc.collect()
    assert process.wait(timeout=30) == 0


def test_runtime_reports_a_broken_artifact(exported, tmp_path):
    from kobert.runtimes.mxnet import MXNetRuntime

    broken = tmp_path / "broken"
    (broken / "mxnet").mkdir(parents=True)
    (broken / "manifest.json").write_text((exported["dir"] / "manifest.json").read_text())
    (broken / "mxnet" / "kobert-symbol.json").write_text((exported["dir"] / "mxnet" / "kobert-symbol.json").read_text())
    (broken / "mxnet" / "kobert-0000.params").write_bytes(b"not a params file")
    with pytest.raises(RuntimeError, match="kobert-symbol.json"):
        MXNetRuntime(broken, verify=False)  # past the sha256 check, to the framework's own error
    with pytest.raises(ValueError, match="kobert-0000.params: sha256 differs"):
        MXNetRuntime(broken)


def test_export_reports_worker_failure(tmp_path):
    cfg = preset("tiny")
    weights = canonical_weights(reference_model(cfg, seed=4), cfg)
    del weights.tensors["layer.1.ffn.down.bias"]  # the Gluon build must name it
    with pytest.raises(mxnet_exporter.MXNetExportError, match=r"absent: \['layer\.1\.ffn\.down\.bias'\]"):
        mxnet_exporter.export(weights, tmp_path)


def test_exporter_imports_no_mxnet():
    code = ("import sys, kobert, kobert.exporters.mxnet, kobert.runtimes.mxnet, kobert.mxnet_env; "
            "assert 'mxnet' not in sys.modules and 'kobert.exporters.mxnet_gluon' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- the Gluon parameters are the canonical tensors ----------------------------------

GLUON_NAMES = textwrap.dedent("""
    import json, sys
    from kobert.canonical import CanonicalWeights
    from kobert.exporters import mxnet_gluon
    weights = CanonicalWeights.load(sys.argv[1])
    table = mxnet_gluon.gluon_weight_table(weights.config)
    # A Gluon model whose parameters drift from the table is refused at build time, naming both sides.
    mxnet_gluon.GLUON_LEAVES["gamma"] = "scale"
    try:
        mxnet_gluon.build_gluon_model(weights)
        drift = None
    except RuntimeError as error:
        drift = str(error)
    print(json.dumps({"table": table, "drift": drift}))
""")


def test_gluon_parameter_names_are_the_canonical_names(exported, tmp_path):
    cfg, export_dir = exported["cfg"], exported["dir"]
    canonical_weights(exported["model"], cfg).save(tmp_path / "canonical")
    env = mxnet_subprocess_env()
    proc = subprocess.run([MXNET_PYTHON, "-s", "-c", GLUON_NAMES, str(tmp_path / "canonical")],
                          env=env, cwd=env["PYTHONPATH"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    table = {name: tuple(row) for name, row in result["table"].items()}
    # One Gluon parameter per canonical tensor, transposed exactly where the canonical table says.
    assert sorted(table.values()) == sorted((canonical, transpose) for canonical, _, _, transpose in weight_table(cfg))
    assert table["kobert_layer_0_attention_query_weight"] == ("layer.0.attention.query.kernel", True)
    assert table["kobert_embeddings_token_type_weight"] == ("embeddings.token_type", False)
    assert table["kobert_layer_1_ffn_norm_gamma"] == ("layer.1.ffn.norm.gamma", False)
    # ...and they are the exported symbol's parameters, inputs aside.
    symbol = json.loads((export_dir / "mxnet" / "kobert-symbol.json").read_text())
    variables = {node["name"] for node in symbol["nodes"] if node["op"] == "null"}
    assert variables - set(INPUT_NAMES) == set(table)
    assert "missing ['kobert_embeddings_norm_scale'" in result["drift"]
    assert "unexpected ['kobert_embeddings_norm_gamma'" in result["drift"]


# --- KoBERT-base scale ---------------------------------------------------------------


@pytest.mark.slow
def test_base_scale_parity(tmp_path_factory):
    from kobert.runtimes.mxnet import MXNetRuntime

    cfg = preset("base").with_head("sequence_classification", 2)
    model = reference_model(cfg, seed=7, initializer_range=0.02)  # transformers' (and BERT's) own init
    weights = canonical_weights(model, cfg)
    export_dir = tmp_path_factory.mktemp("mxnet-base")
    export_with_manifest(weights, export_dir)
    del weights
    inputs = make_inputs([64, 29], 64, cfg.vocab_size, seed=8)
    with MXNetRuntime(export_dir) as runtime:
        got = runtime.run(**inputs)
    errors = max_abs_errors(got, reference_outputs(model, cfg, inputs), inputs["attention_mask"])
    assert max(errors.values()) <= ATOL, errors
