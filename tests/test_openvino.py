"""The OpenVINO tiers: each IR loads in plain OpenVINO (no kobert) with its manifest's compile_config and
gives transformers' outputs, f32 within the fp32 gate and bf16 really computed in bf16 where the CPU has it."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import transformers_reference
from kobert import runtimes
from kobert.bench.measure import cpu_info
from kobert.checkpoint import init_checkpoint, shipped
from kobert.config import INPUTS, preset
from kobert.export import export

pytest.importorskip("openvino")

# Reads only the manifest and OpenVINO: what a user without kobert runs.
PLAIN_OPENVINO = textwrap.dedent("""
    import json, sys
    import numpy as np
    import openvino as ov
    export_dir, artifact, inputs_file = sys.argv[1:]
    entry = json.load(open(f"{export_dir}/manifest.json"))["artifacts"][artifact]
    xml = f"{export_dir}/{entry['files'][0]}"
    compiled = ov.Core().compile_model(xml, "CPU", entry["compile_config"])
    inputs = {k: np.asarray(v, dtype=np.int64) for k, v in json.load(open(inputs_file)).items()}
    results = compiled.create_infer_request().infer(inputs)
    outputs = {name: results[compiled.output(name)].tolist() for name in entry["outputs"]}
    assert "kobert" not in sys.modules
    print(json.dumps(outputs))
""")


def _cpu_has_bf16() -> bool:
    flags = cpu_info()["flags"]
    return flags.get("avx512_bf16", False) or flags.get("amx_bf16", False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("openvino")
    checkpoint = init_checkpoint(preset("tiny").with_head("sequence_classification", 3), root / "ck", seed=11)
    result = export(checkpoint, root / "export", targets=["openvino", "openvino-bf16"])
    rng = np.random.default_rng(2)
    ids = rng.integers(5, 8002, size=(3, 17))
    mask = np.ones_like(ids)
    mask[2, 6:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    want = transformers_reference.outputs(transformers_reference.load(checkpoint), inputs)
    return result.out, inputs, want


def _plain_openvino(export_dir, artifact, inputs, tmp_path) -> dict[str, np.ndarray]:
    inputs_file = tmp_path / "inputs.json"
    inputs_file.write_text(json.dumps({k: v.tolist() for k, v in inputs.items()}))
    done = subprocess.run([sys.executable, "-c", PLAIN_OPENVINO, str(export_dir), artifact, str(inputs_file)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return {name: np.asarray(value, dtype=np.float32) for name, value in json.loads(done.stdout).items()}


def test_the_manifest_records_ir_files_and_compile_config(exported):
    export_dir, _, _ = exported
    manifest = json.loads((export_dir / "manifest.json").read_text())
    for artifact, precision in (("openvino", "f32"), ("openvino-bf16", "bf16")):
        entry = manifest["artifacts"][artifact]
        assert entry["files"] == [f"{artifact}/model.xml", f"{artifact}/model.bin"]
        assert entry["compile_config"] == {"INFERENCE_PRECISION_HINT": precision}
        assert [(i["name"], i["dtype"]) for i in entry["inputs"]] == list(INPUTS)  # the "onnx" artifact's
    assert "onnx" not in manifest["artifacts"]  # built from it, not asked for
    parity = json.loads((export_dir / "parity.json").read_text())
    assert parity["passed"] and parity["artifacts"]["openvino-bf16"]["gate"]["tier"] == "bf16"


@pytest.mark.parametrize("artifact", ["openvino", "openvino-bf16"])
def test_plain_openvino_and_the_runtime_give_transformers_outputs(exported, artifact, tmp_path):
    export_dir, inputs, want = exported
    plain = _plain_openvino(export_dir, artifact, inputs, tmp_path)
    with runtimes.load(export_dir, runtime="openvino", artifact=artifact) as runtime:
        ours = runtime.run(**inputs)
    assert list(plain) == list(ours) == list(want)
    for name in want:
        np.testing.assert_array_equal(ours[name], plain[name], err_msg=name)  # same compile, same numbers
        scale = np.abs(want[name]).max()
        error = np.abs(ours[name] - want[name]).max() / scale
        if artifact == "openvino":
            assert error < 1e-5, (name, error)
        else:
            assert error < 5e-2, (name, error)
            if _cpu_has_bf16():
                assert error > 1e-6, f"{name}: equal to f32, so the bf16 hint was not applied"
    assert (ours["logits"].argmax(-1) == want["logits"].argmax(-1)).all()


# --- openvino-int8: NNCF static int8, calibrated on Korean text ----------------------------------

# A shape no code path was written for: 3 heads of 16, 3 layers, an FFN of 80.
UNSEEN = dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=3, intermediate_size=80)


@pytest.fixture(scope="module")
def int8_checkpoint(tmp_path_factory):
    import dataclasses

    # Random weights, not test_tiers' spread_head: its encoder x4 puts activations out where one static
    # scale per tensor cannot follow them (pooled cosine 0.995 with 300 calibration rows; dynamic int8,
    # scaled per call, passes there).
    config = dataclasses.replace(preset("tiny"), **UNSEEN).with_head("sequence_classification", 2)
    return init_checkpoint(config, tmp_path_factory.mktemp("int8") / "ck", seed=7)


def _export_int8(checkpoint, out, **options):
    from kobert import calibration

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(calibration, "MAX_ITEMS", 24)  # a few seconds of statistics on the tiny model
        return export(checkpoint, out, targets=["openvino-int8"], tokenizer=shipped("tokenizer"), **options)


@pytest.fixture(scope="module")
def int8_exported(int8_checkpoint, tmp_path_factory):
    return _export_int8(int8_checkpoint, tmp_path_factory.mktemp("int8") / "export")


def test_int8_ir_is_quantized_and_loads_in_plain_openvino(int8_exported, int8_checkpoint, tmp_path):
    import openvino as ov

    export_dir = int8_exported.out
    entry = int8_exported.manifest["artifacts"]["openvino-int8"]
    assert entry["files"] == ["openvino-int8/model.xml", "openvino-int8/model.bin"]
    assert entry["compile_config"] == {"INFERENCE_PRECISION_HINT": "f32"}
    assert entry["quantization"]["source"] == "golden texts + assets/calibration_ko.txt"
    ops = [op.get_type_name() for op in ov.Core().read_model(str(export_dir / entry["files"][0])).get_ops()]
    assert ops.count("FakeQuantize") >= 6 * UNSEEN["num_hidden_layers"], "the IR is not quantized"
    rng = np.random.default_rng(3)
    ids = rng.integers(5, 8002, size=(4, 21))
    inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    want = transformers_reference.outputs(transformers_reference.load(int8_checkpoint), inputs)
    plain = _plain_openvino(export_dir, "openvino-int8", inputs, tmp_path)
    with runtimes.load(export_dir, runtime="openvino", artifact="openvino-int8") as runtime:
        ours = runtime.run(**inputs)
    np.testing.assert_array_equal(ours["pooler_output"], plain["pooler_output"])
    pooled, reference = plain["pooler_output"], want["pooler_output"]
    cosine = (pooled * reference).sum(-1) / np.linalg.norm(pooled, axis=-1) / np.linalg.norm(reference, axis=-1)
    assert cosine.min() > 0.99 and np.abs(pooled - reference).max() > 1e-6  # close to fp32, not fp32
    assert int8_exported.report.artifacts["openvino-int8"].gate.tier == "int8" and int8_exported.report.passed


def test_int8_under_accuracy_control_on_a_labelled_eval_set(int8_checkpoint, tmp_path):
    from transformers import AutoTokenizer

    from test_tiers import GOLDEN_TEXTS

    # Labels from transformers itself (fp32), not from any kobert runtime.
    encoded = AutoTokenizer.from_pretrained(str(shipped("tokenizer")))(GOLDEN_TEXTS, padding=True, return_tensors="np")
    labels = transformers_reference.outputs(transformers_reference.load(int8_checkpoint), dict(encoded))["logits"].argmax(-1)
    tsv = tmp_path / "eval.tsv"
    tsv.write_text("id\tdocument\tlabel\n" + "".join(f"{i}\t{t}\t{l}\n" for i, (t, l) in enumerate(zip(GOLDEN_TEXTS, labels))),
                   encoding="utf-8")
    result = _export_int8(int8_checkpoint, tmp_path / "export", eval_set=tsv)
    quantization = result.manifest["artifacts"]["openvino-int8"]["quantization"]
    assert quantization["source"] == "eval set eval.tsv" and quantization["rows"] == len(GOLDEN_TEXTS)
    assert quantization["accuracy_control"] == {"metric": "accuracy", "max_drop_points": 0.3,
                                                "examples": len(GOLDEN_TEXTS)}
    task = result.report.artifacts["openvino-int8"].task
    assert task["measured_on"] == "labelled eval set eval.tsv" and abs(task["accuracy_delta_points"]) <= 0.3


def test_a_compile_that_crashes_is_one_line_error_not_a_dead_process(exported, tmp_path, monkeypatch):
    from kobert.runtimes import openvino as ov_runtime

    export_dir, inputs, _ = exported
    monkeypatch.setenv("KOBERT_CACHE_DIR", str(tmp_path / "cache"))
    # The child dies as #35943's did: SIGFPE inside compile_model.
    monkeypatch.setattr(ov_runtime, "COMPILE_PROBE", "import os, signal; os.kill(os.getpid(), signal.SIGFPE)")
    with pytest.raises(RuntimeError) as failed:
        runtimes.load(export_dir, runtime="openvino", artifact="openvino")
    message = str(failed.value)
    assert "\n" not in message and "crashed with SIGFPE" in message and "openvino/model.xml" in message
    monkeypatch.undo()
    monkeypatch.setenv("KOBERT_CACHE_DIR", str(tmp_path / "cache"))
    with runtimes.load(export_dir, runtime="openvino", artifact="openvino") as runtime:  # the real probe passes
        assert runtime.run(**inputs)["logits"].shape[0] == 3
    assert (tmp_path / "cache" / "openvino-compiles.json").is_file()


# Run as a user would (no pytest in the process, which NNCF reads as "no telemetry"; no CI variable; a
# home without OpenVINO's consent file, which openvino_telemetry reads as consent): count the telemetry
# events handed to its Google Analytics backend in this process while kobert exports and its parity
# stage runs the IRs. A child process that sent (the runtime's compile probe) would have written its
# client id to ~/intel, as `import openvino` alone does without kobert.
COUNT_TELEMETRY = textwrap.dedent("""
    import json, os, sys
    from openvino_telemetry.backend.backend_ga4 import GA4Backend
    sent = []
    GA4Backend.send = lambda self, message: sent.append(message["events"][0]["name"])
    from kobert.checkpoint import init_checkpoint
    from kobert.config import preset
    from kobert.export import export
    root = sys.argv[1]
    checkpoint = init_checkpoint(preset("tiny").with_head("sequence_classification", 2), root + "/ck", seed=5)
    result = export(checkpoint, root + "/export", targets=["openvino", "openvino-int8"])
    print(json.dumps({"passed": result.report.passed, "sent": sent, "ci": os.environ.get("CI"),
                      "client_id_written": os.path.exists(os.path.expanduser("~/intel"))}))
""")


def test_an_export_sends_no_telemetry(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NNCF_CI")}
    env["HOME"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", COUNT_TELEMETRY, str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.splitlines()[-1])
    assert got == {"passed": True, "sent": [], "ci": None, "client_id_written": False}
