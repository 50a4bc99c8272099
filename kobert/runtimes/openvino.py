"""OpenVINO adapter: runs the "openvino" and "openvino-bf16" IR artifacts on the CPU.

The IR is compiled with the manifest entry's "compile_config" (see `kobert.exporters.openvino`),
so each tier runs at the precision it was judged at. One infer request per thread: a compiled
model is shared, a request is not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from kobert.runtimes.base import Runtime
from kobert.runtimes.openvino_telemetry import TELEMETRY_OFF, import_openvino

ov = import_openvino()

# Without a recorded config (an IR from elsewhere), run what the IR says: f32, not the CPU's bf16 default.
F32 = {"INFERENCE_PRECISION_HINT": "f32"}


# Compiles an IR in a child process: a crash there (SIGFPE in compile_model, openvinotoolkit/openvino#35943)
# is a one-line error, not a dead server. Argument: the IR path and the compile config as JSON.
COMPILE_PROBE_TIMEOUT_S = 600
COMPILE_PROBE = ("import json, sys, openvino as ov; "
                 "ov.Core().compile_model(sys.argv[1], 'CPU', json.loads(sys.argv[2]))")


def compiles_here(xml: Path, config: dict) -> None:
    """Compile once in a child process per (CPU, OpenVINO version), remembered in the cache folder; a child
    killed by a signal raises one RuntimeError naming it, the IR, the CPU and the issue."""
    from kobert.runtimes.auto import cache_dir, cpu_signature

    marker = cache_dir() / "openvino-compiles.json"
    key = f"{cpu_signature()} | openvino {ov.__version__}"
    try:
        known = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if known.get(key):
        return
    try:  # a compile that hangs is an error too, never a server stuck at start-up
        done = subprocess.run([sys.executable, "-c", COMPILE_PROBE, str(xml), json.dumps(config)],
                              capture_output=True, text=True, timeout=COMPILE_PROBE_TIMEOUT_S,
                              env={**os.environ, **TELEMETRY_OFF})
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{xml}: OpenVINO {ov.__version__} did not finish compiling the IR in "
                           f"{COMPILE_PROBE_TIMEOUT_S} s (a child process); use --runtime onnx") from None
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise RuntimeError(f"{xml}: OpenVINO {ov.__version__} crashed with {name} compiling the IR on this CPU "
                           f"({cpu_signature()[:60]}); see openvinotoolkit/openvino#35943, or use --runtime onnx")
    if done.returncode == 0:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({**known, key: True}), encoding="utf-8")


class OpenVinoRuntime(Runtime):
    name = "openvino"
    default_artifact = "openvino"

    def _open(self, files: list[Path]) -> None:
        config = dict(self.entry.get("compile_config") or F32)
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.threads
        compiles_here(files[0], config)
        try:
            self.compiled = ov.Core().compile_model(str(files[0]), "CPU", config)
        except RuntimeError as e:
            why = (str(e).strip().splitlines() or ["no reason given"])[-1]
            raise RuntimeError(f"{files[0]}: OpenVINO could not compile the IR with {config}: {why}") from None
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
