"""The bench's pieces that need no timing: the FLOP count, the CPU line, the worker protocol."""

import json
import subprocess
import sys

import numpy as np
import pytest

from kobert.bench import WorkerError, cpu_info, gemm_operands, model_flops, run_worker
from kobert.config import preset


def test_model_flops_of_kobert_base_matches_a_hand_count():
    """12 layers x (128 tokens x (8*768^2 + 4*768*3072) + 4*128^2*768) + pooler 2*768^2 + head 2*768*2."""
    per_token = 8 * 768 * 768 + 4 * 768 * 3072  # 4,718,592 + 9,437,184 = 14,155,776
    assert per_token == 14_155_776
    per_layer = 128 * 14_155_776 + 4 * 128 * 128 * 768  # 1,811,939,328 + 50,331,648
    assert per_layer == 1_862_270_976
    config = preset("base").with_head("sequence_classification", 2)
    assert model_flops(config, 1, 128) == 12 * 1_862_270_976 + 1_179_648 + 3_072 == 22_348_434_432
    assert model_flops(config, 32, 128) == 32 * 22_348_434_432  # about 715 GFLOP


def test_model_flops_per_token_head_and_no_pooler():
    """tiny (32 hidden, 64 FFN, 2 layers), token classification with 4 labels, batch 2 x 10 tokens:
    per layer 10 x (8192 + 8192) + 4 x 100 x 32 = 176,640; no pooler; head 2 x 32 x 4 x 10 = 2,560;
    (2 x 176,640 + 2,560) x 2 = 711,680."""
    config = preset("tiny").with_head("token_classification", 4)
    assert model_flops(config, 2, 10) == 711_680


def test_cpu_info_reads_model_and_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx2 avx512f amx_tile amx_fp16\n\n"
                       "processor\t: 1\nmodel name\t: Test CPU 9000\nflags\t\t: fpu\n")
    info = cpu_info(str(cpuinfo))
    assert info["model"] == "Test CPU 9000"
    assert info["flags"]["avx512f"] and not info["flags"]["avx512_vnni"] and not info["flags"]["amx_bf16"]
    assert info["flags"]["amx_fp16"]  # any amx_* flag the CPU reports is listed


def test_worker_replies_one_json_line_with_a_correct_gemm():
    """The worker protocol: one request on stdin, one reply line on stdout; the product is checked with numpy."""
    pytest.importorskip("onnxruntime")
    request = {"kind": "gemm", "label": "GEMM onnxruntime MatMul", "runtime": "onnx", "k": 24, "n": 40,
               "warmup": 1, "calls": 2, "rows": {"small": 8, "larger": 64}}
    done = subprocess.run([sys.executable, "-m", "kobert.bench", "--worker"], input=json.dumps(request) + "\n",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout  # nothing but the reply on stdout
    reply = json.loads(lines[0])
    for shape, m in request["rows"].items():
        seconds = reply["times"]["GEMM onnxruntime MatMul"][shape]
        assert len(seconds) == 2 and all(s > 0 for s in seconds)
        x, w = gemm_operands(m, 24, 40)
        assert reply["checksums"][shape] == pytest.approx(float((x.astype(np.float64) @ w).sum()), rel=1e-4, abs=1e-3)
    assert reply["peak_rss_mb"] > 0


def test_worker_errors_are_one_line_naming_the_row():
    with pytest.raises(WorkerError, match=r"bench worker for 'some row': ValueError: unknown request kind 'nope'"):
        run_worker({"kind": "nope", "label": "some row"}, timeout=60)
    with pytest.raises(WorkerError, match=r"'onnx row'.*no manifest.json"):
        run_worker({"kind": "runtime", "label": "onnx row", "runtime": "onnx", "artifact": "onnx",
                    "export_dir": "/nonexistent", "shapes": {"b1": [1, 4]}, "vocab_size": 10, "warmup": 0,
                    "calls": 1}, timeout=60)
