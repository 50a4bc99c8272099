"""`kobert bench --quick`: the tables have their rows and every ratio is a finite number.

Nothing here compares a timing with a threshold; the numbers are for people to read.
"""

import math

from kobert.bench import MXNET_RAW_ROW, SHAPES
from kobert.cli import main


def test_quick_bench_table_rows_and_finite_ratios(tmp_path, capsys, throwaway_target):
    """Every registry target with a bench label is a row (a throwaway target registered by the test too)."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for row in ["torch eager", "onnxruntime fp32", "onnxruntime optimized", "onnxruntime fp16", "onnxruntime int8",
                "tensorflow", "tensorflow XLA (jit_compile)", "tflite fp32", "tflite int8", "throwaway copy",
                "onnxruntime fp32 (raw session)", "throwaway copy (raw session)"]:
        assert f"| {row} |" in printed, row
    assert "| adapter vs raw session |" in printed and "| tokenizer | docs/s |" in printed
    import json

    data = json.loads(out.read_text())
    assert set(data["x_torch"]) >= {"torch eager", "onnxruntime fp32", "tflite fp32"}
    for row, by_shape in data["x_torch"].items():
        assert set(by_shape) == set(SHAPES), row
        assert all(math.isfinite(r) and r > 0 for r in by_shape.values()), row
    for row, by_shape in data["adapter_overhead"].items():
        assert all(math.isfinite(v) for v in by_shape.values()), row
    assert all(size > 0 for size in data["size_bytes"].values())
    if "mxnet (worker IPC)" in data["x_torch"]:  # the MXNet venv exists: its raw session is timed too
        assert MXNET_RAW_ROW in data["x_torch"] and "mxnet (worker IPC)" in data["adapter_overhead"]
