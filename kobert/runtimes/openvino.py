"""OpenVINO adapter: runs the "openvino" and "openvino-bf16" IR artifacts on the CPU.

The IR is compiled with the manifest entry's "compile_config" (see `kobert.exporters.openvino`),
so each tier runs at the precision it was judged at. One infer request per thread: a compiled
model is shared, a request is not.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import openvino as ov

from kobert.runtimes.base import Runtime

# Without a recorded config (an IR from elsewhere), run what the IR says: f32, not the CPU's bf16 default.
F32 = {"INFERENCE_PRECISION_HINT": "f32"}


class OpenVinoRuntime(Runtime):
    name = "openvino"
    default_artifact = "openvino"

    def _open(self, files: list[Path]) -> None:
        config = dict(self.entry.get("compile_config") or F32)
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.threads
        self.compiled = ov.Core().compile_model(str(files[0]), "CPU", config)
        self.ports = {name: self._output_port(name) for name in self.output_names}
        self.input_dtypes = {spec["name"]: np.dtype(spec["dtype"]) for spec in self.entry["inputs"]}
        self._requests = threading.local()

    def _output_port(self, name: str):
        for port in self.compiled.outputs:
            if name in port.get_names():
                return port
        raise ValueError(f"{self.export_dir}: the {self.artifact!r} IR has no output named {name!r}")

    def _request(self):
        if not hasattr(self._requests, "request"):
            self._requests.request = self.compiled.create_infer_request()
        return self._requests.request

    def _forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {name: inputs[name].astype(dtype) for name, dtype in self.input_dtypes.items()}
        results = self._request().infer(feed)
        return {name: np.array(results[port]) for name, port in self.ports.items()}

    def raw_session(self):
        return self._request().infer
