"""OpenVINO IR tiers of the fp32 "onnx" artifact: "openvino" (f32) and "openvino-bf16".

Each tier reads `export_dir/onnx/model.onnx` (written by `kobert.exporters.onnx`), converts
it with `openvino.convert_model` and saves `export_dir/<tier>/model.xml` + `model.bin`
with float32 weights (`compress_to_fp16=False`: the IR is the fp32 graph, the tier is how it
is compiled). The tiers differ only in the manifest entry's "compile_config", the properties a
plain `openvino.Core().compile_model(xml, "CPU", compile_config)` needs to run the tier at its
own precision. It must be explicit for f32 too: OpenVINO's CPU plugin runs an f32 IR in bf16
on CPUs with AVX512-BF16 or AMX unless told `INFERENCE_PRECISION_HINT=f32`, and (measured with
2026.4) does not read that hint from the IR's `runtime_options`.

The IR takes the same named int64 inputs as the "onnx" artifact and gives its outputs under
the same names. Each tier is judged by its own parity gate (`kobert.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import openvino as ov

from kobert.canonical import CanonicalWeights
from kobert.config import INPUTS
from kobert.exporters import ExportedArtifact


@dataclass(frozen=True)
class OpenVinoTier:
    """One tier: `export(weights, export_dir)` like every exporter module."""

    name: str
    precision: str  # OpenVINO's INFERENCE_PRECISION_HINT: "f32" or "bf16"

    @property
    def compile_config(self) -> dict[str, str]:
        return {"INFERENCE_PRECISION_HINT": self.precision}

    def export(self, weights: CanonicalWeights, export_dir: Path) -> ExportedArtifact:
        export_dir = Path(export_dir)
        source = export_dir / "onnx" / "model.onnx"
        if not source.is_file():
            raise FileNotFoundError(f"{source}: no fp32 ONNX here; export the 'onnx' artifact first")
        model = ov.convert_model(str(source))
        target = export_dir / self.name / "model.xml"
        target.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, str(target), compress_to_fp16=False)
        return ExportedArtifact(
            name=self.name,
            files=[f"{self.name}/model.xml", f"{self.name}/model.bin"],
            inputs=[{"name": name, "dtype": dtype} for name, dtype in INPUTS],
            outputs=list(weights.config.output_names),
            framework=f"openvino {ov.__version__}",
            extra={"tier": self.precision, "compile_config": self.compile_config},
        )


fp32 = OpenVinoTier("openvino", "f32")
bf16 = OpenVinoTier("openvino-bf16", "bf16")
