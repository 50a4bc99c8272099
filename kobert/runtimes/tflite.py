"""TFLite runtime: runs the "tflite" and "tflite-int8" artifacts with LiteRT.

LiteRT (`ai_edge_litert.Interpreter`, TFLite's successor package) is used when
installed; else `tf.lite.Interpreter`, which TF 2.21 marks for deletion.

The models keep a dynamic (batch, length) shape signature; each call resizes
the input tensors (resize_tensor_input + allocate_tensors) when the shape
changes, so any batch and length up to the model's positions work.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from kobert.progress import native_stderr_quieted
from kobert.runtimes.base import Runtime


def interpreter_class():
    """LiteRT's Interpreter where installed, else TensorFlow's (the same kernels, measured bit-identical)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from kobert.runtimes.tf_logging import import_tensorflow

        Interpreter = import_tensorflow().lite.Interpreter
    return Interpreter


class TFLiteRuntime(Runtime):
    name = "tflite"
    default_artifact = "tflite"

    def _open(self, files: list[Path]) -> None:
        self.interpreter_class = interpreter_class()
        self.files = files
        with native_stderr_quieted():  # TFLite announces its XNNPACK delegate on stderr
            self.interpreter = self.interpreter_class(model_path=str(files[0]), num_threads=self.threads or os.cpu_count() or 1)
        runner = self.interpreter.get_signature_runner(self.entry.get("signature", "serving_default"))
        self.input_index = {name: d["index"] for name, d in runner.get_input_details().items()}
        self.output_index = {name: d["index"] for name, d in runner.get_output_details().items()}
        # The runner holds views into the interpreter's buffers; resize refuses while any exist.
        del runner
        missing = [n for n in self.output_names if n not in self.output_index]
        if missing:
            raise ValueError(f"{files[0]}: signature has no output(s) {', '.join(missing)}; "
                             f"it has {', '.join(self.output_index)}")
        self.input_dtypes = {spec["name"]: np.dtype(spec["dtype"]) for spec in self.entry["inputs"]}
        self._shape = None
        self._lock = threading.Lock()

    def _forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # One interpreter holds one set of tensors: concurrent callers take turns.
        with self._lock:
            return self._invoke(inputs)

    def _invoke(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        shape = inputs["input_ids"].shape
        if shape != self._shape:
            for index in self.input_index.values():
                self.interpreter.resize_tensor_input(index, list(shape), strict=True)
            with native_stderr_quieted():  # the XNNPACK delegate is made (and announced) here
                self.interpreter.allocate_tensors()
            self._shape = shape
        for name, index in self.input_index.items():
            self.interpreter.set_tensor(index, np.ascontiguousarray(inputs[name], dtype=self.input_dtypes[name]))
        self.interpreter.invoke()
        return {name: self.interpreter.get_tensor(self.output_index[name]).copy() for name in self.output_names}

    def raw_session(self):
        # A runner of its own: it resizes by itself, and must not share the adapter's resized tensors.
        runner = self.interpreter_class(model_path=str(self.files[0]), num_threads=os.cpu_count() or 1) \
            .get_signature_runner(self.entry.get("signature", "serving_default"))
        return lambda feed: runner(**feed)
