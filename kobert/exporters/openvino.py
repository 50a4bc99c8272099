"""OpenVINO IR tiers of the fp32 "onnx" artifact: "openvino" (f32) and "openvino-bf16".

Each tier reads `export_dir/onnx/model.onnx` (written by `kobert.exporters.onnx`), converts
it with `openvino.convert_model` and saves `export_dir/<tier>/model.xml` + `model.bin`
with float32 weights (`compress_to_fp16=False`: the IR is the fp32 graph, the tier is how it
is compiled). The tiers differ only in the manifest entry's "compile_config", the properties a
plain `openvino.Core().compile_model(xml, "CPU", compile_config)` needs to run the tier at its
own precision. It must be explicit for f32 too: OpenVINO's CPU plugin runs an f32 IR in bf16
on CPUs with AVX512-BF16 or AMX unless told `INFERENCE_PRECISION_HINT=f32`, and (measured with
2026.4) does not read that hint from the IR's `runtime_options`.

"openvino-int8" is NNCF's post-training static quantization of that IR (transformer model type:
int8 MatMuls with FakeQuantize on their inputs, softmax and normalizations kept in float),
calibrated on Korean text (`kobert.calibration`); with a task eval set it is NNCF's accuracy
control, which returns layers to float until the task's gated metric is within the int8 gate
of fp32. Its ops that stay float are compiled in f32, like the fp32 tier.

The IR takes the same named int64 inputs as the "onnx" artifact and gives its outputs under
the same names. Each tier is judged by its own parity gate (`kobert.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kobert.canonical import CanonicalWeights
from kobert.config import INPUTS
from kobert.exporters import ExportedArtifact
from kobert.runtimes.openvino_telemetry import import_openvino, telemetry_off

ov = import_openvino()


@dataclass(frozen=True)
class OpenVinoTier:
    """One tier: `export(weights, export_dir)` like every exporter module."""

    name: str
    precision: str  # OpenVINO's INFERENCE_PRECISION_HINT: "f32" or "bf16"

    @property
    def compile_config(self) -> dict[str, str]:
        return {"INFERENCE_PRECISION_HINT": self.precision}

    def export(self, weights: CanonicalWeights, export_dir: Path) -> ExportedArtifact:
        with telemetry_off():
            model = ov.convert_model(str(_onnx_source(Path(export_dir))))
        return _save_ir(model, Path(export_dir), self.name, weights, f"openvino {ov.__version__}",
                        {"tier": self.precision, "compile_config": self.compile_config})


def _onnx_source(export_dir: Path) -> Path:
    """The fp32 ONNX artifact every OpenVINO tier is converted from."""
    source = export_dir / "onnx" / "model.onnx"
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no fp32 ONNX here; export the 'onnx' artifact first")
    return source


def _save_ir(model, export_dir: Path, name: str, weights: CanonicalWeights, framework: str,
             extra: dict) -> ExportedArtifact:
    """`model` saved as NAME/model.xml + .bin (fp32 weights), described as the manifest lists it: IR first."""
    target = export_dir / name / "model.xml"
    target.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(target), compress_to_fp16=False)
    return ExportedArtifact(
        name=name,
        files=[f"{name}/model.xml", f"{name}/model.bin"],
        inputs=[{"name": input_name, "dtype": dtype} for input_name, dtype in INPUTS],
        outputs=list(weights.config.output_names),
        framework=framework,
        extra=extra,
    )


fp32 = OpenVinoTier("openvino", "f32")
bf16 = OpenVinoTier("openvino-bf16", "bf16")


@dataclass(frozen=True)
class OpenVinoInt8:
    """The statically quantized tier: `export(weights, export_dir, calibration)` (a `Target` with calibrated=True)."""

    name: str = "openvino-int8"
    precision: str = "f32"  # of the ops NNCF leaves in float

    def export(self, weights: CanonicalWeights, export_dir: Path, calibration) -> ExportedArtifact:
        source = _onnx_source(Path(export_dir))
        with telemetry_off():
            import nncf

            quantized = quantize(ov.convert_model(str(source)), calibration, list(weights.config.output_names))
        extra = {"tier": "int8", "compile_config": {"INFERENCE_PRECISION_HINT": self.precision},
                 "quantization": {"method": "nncf static", "model_type": "transformer", "smooth_quant": False,
                                  **calibration.record()}}
        return _save_ir(quantized, Path(export_dir), self.name, weights,
                        f"openvino {ov.__version__}, nncf {nncf.__version__}", extra)


def quantize(model, calibration, output_names: list[str]):
    """NNCF static int8 of an ov.Model; under accuracy control when the calibration has a task check."""
    import logging

    import nncf

    nncf.set_log_level(logging.ERROR)
    dataset = nncf.Dataset(calibration.items)
    # SmoothQuant off: it is for the activation outliers of large decoders; on a tiny KoBERT it cut the
    # pooled output's cosine to fp32 from 0.9995 to 0.9970, under the int8 gate's 0.999.
    advanced = nncf.AdvancedQuantizationParameters(smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=-1))
    common = {"model_type": nncf.ModelType.TRANSFORMER, "subset_size": len(calibration.items)}
    check = calibration.check
    if check is None:
        return nncf.quantize(model, dataset, advanced_parameters=advanced, **common)

    def validate(compiled, indices):
        request = compiled.create_infer_request()
        ports = {name: compiled.output(name) for name in output_names}

        def forward(inputs):
            results = request.infer({k: np.asarray(v, dtype=np.int64) for k, v in inputs.items()})
            return {name: np.array(results[port]) for name, port in ports.items()}

        return check.measure(forward, list(indices))

    return nncf.quantize_with_accuracy_control(
        model, dataset, nncf.Dataset(list(range(check.examples))), validate, max_drop=check.max_drop_points,
        drop_type=nncf.DropType.ABSOLUTE, advanced_quantization_parameters=advanced, **common)


int8 = OpenVinoInt8()
