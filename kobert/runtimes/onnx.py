"""ONNX Runtime adapter: runs the "onnx", "tf2onnx" and ONNX tier artifacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime

from kobert.runtimes.base import Runtime

NUMPY_DTYPES = {"int32": np.int32, "int64": np.int64, "float32": np.float32}


class OnnxRuntime(Runtime):
    name = "onnx"
    default_artifact = "onnx"

    def _open(self, files: list[Path]) -> None:
        options = onnxruntime.SessionOptions()
        model = files[0]
        if model.is_dir():  # a Hugging Face folder (hf-onnx): its fp32 model sits at the standard place
            model = model / "onnx" / "model.onnx"
        self.session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.input_dtypes = {i["name"]: NUMPY_DTYPES[i["dtype"]] for i in self.entry["inputs"]}

    def _forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {name: inputs[name].astype(dtype) for name, dtype in self.input_dtypes.items()}
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))

    def raw_session(self):
        return lambda feed, session=self.session: session.run(None, feed)
