"""The benchmark's rows and shapes: which runtimes it times, under which labels, at which batch x tokens."""

from __future__ import annotations

# Shape name -> (batch, tokens).
SHAPES = {"b1 s16": (1, 16), "b1 s128": (1, 128), "b8 s128": (8, 128), "b32 s128": (32, 128)}
TORCH_ROW = "torch eager"
MXNET_RAW_ROW = "mxnet SymbolBlock (raw, timed inside the worker)"
XLA_ROW = "tensorflow XLA (jit_compile)"
# The GEMM-ceiling rows: label -> the runtime module whose `gemm_session(x, w)` runs the MatMul.
GEMM_ROWS = {"GEMM torch matmul": "torch", "GEMM onnxruntime MatMul": "onnx", "GEMM tensorflow matmul": "tf"}
# Gates whose artifacts compute in float32: their rows are compared with the fp32 GEMM ceiling.
FP32_GATES = ("fp32", "fp32-fused")


def runtime_rows() -> dict[str, tuple[str, str]]:
    """Row label -> (runtime, artifact), for every registry target with a bench label."""
    from kobert import registry

    return {t.bench_label: (t.runtime, t.name) for t in registry.TARGETS.values() if t.bench_label}


def fp32_rows(manifest: dict) -> list[str]:
    """Rows that compute in float32: torch eager, and each fp32-gated target with its raw session (and XLA)."""
    from kobert import registry

    rows = [TORCH_ROW]
    for row, (runtime_name, artifact) in runtime_rows().items():
        if artifact in manifest["artifacts"] and registry.target(artifact).gate in FP32_GATES:
            rows += [row, row + " (raw session)"] + ([XLA_ROW] if runtime_name == "tf" else [])
    return rows
