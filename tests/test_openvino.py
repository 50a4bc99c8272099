"""The OpenVINO tiers: each IR loads in plain OpenVINO (no kobert) with its manifest's compile_config and
gives transformers' outputs, f32 within the fp32 gate and bf16 really computed in bf16 where the CPU has it."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import transformers_reference
from kobert import runtimes
from kobert.bench.measure import cpu_info
from kobert.checkpoint import init_checkpoint
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
