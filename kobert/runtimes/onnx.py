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
        if self.threads is not None:
            options.intra_op_num_threads, options.inter_op_num_threads = self.threads, 1
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


def gemm_session(x: np.ndarray, w: np.ndarray):
    """One ONNX MatMul node (`w` an initializer) as `call() -> array`: the benchmark's GEMM-ceiling row."""
    from onnx import TensorProto, helper, numpy_helper

    (m, k), n = x.shape, w.shape[1]
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"x": x})[0]
