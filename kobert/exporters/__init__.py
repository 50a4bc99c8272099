"""Exporters: one module per framework, each reading only a `CanonicalWeights`.

Every exporter has the same shape::

    export(weights: CanonicalWeights, export_dir: Path) -> ExportedArtifact

It writes its files under `export_dir / <artifact name>/` and returns paths
relative to `export_dir`. Each module owns its framework's imports, so this
package imports none of them. Which artifacts exist, what each is built from
and how it is judged is said once, in `kobert.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    from kobert import registry

    return registry.target(name).load_exporter()
