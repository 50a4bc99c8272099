"""The registry is the one place an artifact is described: a target added there alone shows up
in the CLI's choices, the export, parity and `kobert eval`'s runs (the bench is in test_bench.py)."""

import json

from kobert import registry
from kobert.checkpoint import init_checkpoint, shipped
from kobert.cli import build_parser, main
from kobert.config import preset
from kobert.evaluate import runs


def test_a_throwaway_target_reaches_cli_export_parity_and_eval(throwaway_target, tmp_path, capsys):
    help_text = build_parser().format_help()
    run_help = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    export_help = build_parser()._subparsers._group_actions[0].choices["export"].format_help()
    assert "throwaway-onnx" in run_help and "throwaway-onnx" in export_help, help_text

    checkpoint = init_checkpoint(preset("tiny").with_head("sequence_classification", 2), tmp_path / "ck", seed=4)
    out = tmp_path / "export"
    assert main(["--quiet", "export", str(checkpoint), "--to", "throwaway-onnx", "--out", str(out),
                 "--tokenizer", str(shipped("tokenizer"))]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["artifacts"]) == ["throwaway-onnx"]
    assert not (out / "onnx").exists(), "the fp32 ONNX was only its input"
    assert manifest["artifacts"]["throwaway-onnx"]["parity"]["passed"]
    assert "| throwaway-onnx | onnx | logits |" in capsys.readouterr().out

    assert main(["--quiet", "parity", str(out)]) == 0
    assert ("onnx", "throwaway-onnx") in runs(manifest)
    assert main(["--quiet", "run", str(out), "--runtime", "onnx", "--artifact", "throwaway-onnx",
                 "--output", "logits", "좋다"]) == 0


def test_build_order_puts_inputs_first_and_unknown_targets_fail():
    assert registry.build_order(["tflite-int8", "tf2onnx", "onnx-int8"]) == ["onnx", "tf", "tf2onnx", "onnx-int8", "tflite-int8"]
    assert registry.default_targets() == ["onnx", "tf", "tf2onnx", "mxnet"]
    try:
        registry.build_order(["caffe"])
    except ValueError as e:
        assert "unknown export target 'caffe'" in str(e)
    else:
        raise AssertionError("an unknown target must fail")


def test_every_target_names_a_known_runtime_gate_and_importable_exporter():
    from kobert.parity import GATES

    for target in registry.TARGETS.values():
        assert target.runtime in registry.RUNTIMES and target.gate in GATES, target
        module = target.exporter.partition(":")[0]
        assert module.startswith("kobert.exporters."), target
