"""Runtime adapters: one module per framework, one API (see `base.Runtime`).

    rt = kobert.runtimes.load("artifacts/default", runtime="onnx")
    rt.run(input_ids, attention_mask, token_type_ids)  # -> {"last_hidden_state": ..., ...}
    rt.embed(["한국어 문장"], pooling="mean")
"""

from __future__ import annotations

import importlib
from pathlib import Path

# runtime name -> (module, class). Each module imports its framework; this one imports none.
RUNTIMES = {
    "torch": ("kobert.runtimes.torch", "TorchRuntime"),
    "onnx": ("kobert.runtimes.onnx", "OnnxRuntime"),
    "tf": ("kobert.runtimes.tensorflow", "TensorFlowRuntime"),
    "mxnet": ("kobert.runtimes.mxnet", "MXNetRuntime"),
    "tflite": ("kobert.runtimes.tflite", "TFLiteRuntime"),
}


def load(export_dir: str | Path, runtime: str = "onnx", artifact: str | None = None):
    """Open one artifact of an export directory with the named runtime.

    `artifact` picks a manifest entry when a runtime can run several
    (runtime "onnx" runs both "onnx" and "tf2onnx").
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
    module, cls = RUNTIMES[runtime]
    return getattr(importlib.import_module(module), cls)(export_dir, artifact)
