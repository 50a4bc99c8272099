"""`kobert bench --quick`: every row measured in its own worker processes, the tables and the JSON complete.

Nothing here compares a timing with a threshold; the numbers are for people to read.
"""

import json
import math

from kobert.bench import GEMM_ROWS, MXNET_RAW_ROW, SHAPES, TORCH_ROW, model_flops
from kobert.cli import main
from kobert.config import preset


def test_quick_bench_rows_rounds_gflops_and_json(tmp_path, capsys, throwaway_target):
    """Every registry target with a bench label is a row (a throwaway target registered by the test too)."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--calls", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for row in [TORCH_ROW, "onnxruntime fp32", "onnxruntime optimized", "onnxruntime fp16", "onnxruntime int8",
                "tensorflow", "tensorflow XLA (jit_compile)", "tflite fp32", "tflite int8", "throwaway copy",
                "torch bf16 (autocast)", "onnxruntime fp32 (raw session)", "throwaway copy (raw session)"]:
        assert f"| {row} |" in printed, row
    assert "| adapter vs raw session |" in printed and "| tokenizer | docs/s |" in printed
    assert "| fp32 row |" in printed and "CPU: " in printed and "avx512f" in printed

    data = json.loads(out.read_text())
    assert data["rounds"] == 2 and data["calls_per_round"] == 2
    assert set(data["x_torch"]) >= {TORCH_ROW, "onnxruntime fp32", "tflite fp32", "throwaway copy"}
    for row, by_shape in data["x_torch"].items():
        assert set(by_shape) == set(SHAPES), row
        assert all(math.isfinite(r) and r > 0 for r in by_shape.values()), row
    # Each round is a fresh worker process per row: one figure per round, and every one a real time.
    for row, by_shape in data["rows"].items():
        for shape, cell in by_shape.items():
            assert len(cell["round_medians_s"]) == 2, (row, shape)
            assert 0 < cell["min_s"] <= cell["median_s"] <= cell["max_s"], (row, shape)
    # GFLOP/s: the model's FLOPs over its median time; the ceiling is the best GEMM row; fp32 rows get a share of it.
    config = preset("tiny").with_head("sequence_classification", 2)
    for shape, (batch, length) in SHAPES.items():
        assert data["model_flops"][shape] == model_flops(config, batch, length)
        assert data["gemm_shape"][shape] == [batch * length, 32, 64]
        gemm = [data["rows"][row][shape]["gflops"] for row in GEMM_ROWS]
        assert data["ceiling_gflops"][shape] == max(gemm) > 0
        cell = data["rows"]["onnxruntime fp32"][shape]
        assert math.isclose(cell["gflops"], data["model_flops"][shape] / cell["median_s"] / 1e9)
        assert math.isclose(cell["percent_of_ceiling"], 100 * cell["gflops"] / data["ceiling_gflops"][shape])
    assert {"onnxruntime fp32", "throwaway copy", TORCH_ROW} <= set(data["fp32_rows"])
    assert "onnxruntime int8" not in data["fp32_rows"]
    assert data["rows"]["onnxruntime int8"]["b8 s128"]["percent_of_ceiling"] is None
    assert data["cpu"]["model"] and "avx512f" in data["cpu"]["flags"]
    for row, by_shape in data["adapter_overhead"].items():
        assert all(math.isfinite(v) for v in by_shape.values()), row
    assert all(size > 0 for size in data["size_bytes"].values())
    assert data["peak_rss_mb"]["onnx"] > 0 and data["peak_rss_mb"]["throwaway-onnx"] > 0
    if "mxnet (worker IPC)" in data["x_torch"]:  # the MXNet venv exists: its raw session is timed too
        assert MXNET_RAW_ROW in data["x_torch"] and "mxnet (worker IPC)" in data["adapter_overhead"]


def test_bench_targets_times_only_the_named_artifacts(tmp_path, capsys):
    """--targets onnx: torch eager, the ONNX row with its raw session and the GEMM rows, nothing else;
    an artifact without a bench row is one line naming it."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--rounds", "1", "--calls", "1", "--targets", "onnx", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["rows"]) == {TORCH_ROW, "onnxruntime fp32", "onnxruntime fp32 (raw session)", *GEMM_ROWS}
    assert set(data["size_bytes"]) == {"onnx"}
    capsys.readouterr()
    try:
        main(["bench", "--quick", "--targets", "onnx,nonesuch"])
    except SystemExit as e:
        assert e.code == 2
    else:
        raise AssertionError("an unknown target was accepted")
    assert "no bench row for nonesuch; known: onnx," in capsys.readouterr().err
