"""Exporters: one module per framework, each reading only a `CanonicalWeights`.

Every exporter has the same shape::

    export(weights: CanonicalWeights, export_dir: Path) -> ExportedArtifact

It writes its files under `export_dir / <artifact name>/` and returns paths
relative to `export_dir`. Each module owns its framework's imports, so this
package imports none of them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

# artifact name -> module under kobert.exporters, in build order (tf2onnx reads the SavedModel).
EXPORTERS = {
    "onnx": "kobert.exporters.onnx",
    "tf": "kobert.exporters.tensorflow",
    "tf2onnx": "kobert.exporters.tf2onnx",
    "mxnet": "kobert.exporters.mxnet",
    # Tiers: faster, lossier variants built from another artifact, each judged by its own
    # parity tier (kobert.parity.GATES). "module:object" names an object with an `export`.
    "onnx-optimized": "kobert.exporters.onnx_tiers:optimized",
    "onnx-fp16": "kobert.exporters.onnx_tiers:fp16",
    "onnx-int8": "kobert.exporters.onnx_tiers:int8",
    "tflite": "kobert.exporters.tflite:fp32",
    "tflite-int8": "kobert.exporters.tflite:int8",
}
REQUIRES = {"tf2onnx": "tf", "onnx-optimized": "onnx", "onnx-fp16": "onnx", "onnx-int8": "onnx",
            "tflite": "tf", "tflite-int8": "tf"}


@dataclass
class ExportedArtifact:
    """What one exporter produced: the manifest entry, less sha256 and parity."""

    name: str
    files: list[str]
    inputs: list[dict]  # [{"name": "input_ids", "dtype": "int64"}, ...] in call order
    outputs: list[str]
    framework: str  # "<name> <version>"
    extra: dict = field(default_factory=dict)  # "signature" (tf), "opset" (onnx)

    def manifest_entry(self) -> dict:
        return {"files": self.files, "inputs": self.inputs, "outputs": self.outputs,
                "framework": self.framework, **self.extra}


def exporter(name: str):
    """The exporter (a module, or an object, with `export`) for an artifact name (imports its framework)."""
    if name not in EXPORTERS:
        raise ValueError(f"unknown export target {name!r}; expected one of {', '.join(EXPORTERS)}")
    module, _, attribute = EXPORTERS[name].partition(":")
    found = importlib.import_module(module)
    return getattr(found, attribute) if attribute else found
