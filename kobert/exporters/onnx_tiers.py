"""Faster ONNX tiers of the fp32 "onnx" artifact: fused, fp16 and int8.

Each tier reads `export_dir/onnx/model.onnx` (written by `kobert.exporters.onnx`,
see `kobert.registry`) and writes `export_dir/<tier>/model.onnx`. Each is judged by its
own parity tier (`kobert.parity.GATES`), named in the manifest entry as "tier":

- "onnx-optimized": ONNX Runtime's transformer fusions (SkipLayerNormalization,
  BiasGelu, Attention where the graph matches), fp32, judged like fp32. GELU
  stays exact: an approximated GELU (FastGelu) is a different tier, so the
  approximation fusions are off and a FastGelu in the result is an error.
- "onnx-fp16": the fused graph with float16 weights and activations; inputs stay
  int64 and outputs float32 (keep_io_types), so callers see no difference.
- "onnx-int8": the fused graph, dynamic quantization (int8 weights, activations
  quantized per call), per-channel weight scales.
- "onnx-int8-static": static QDQ quantization of the unfused graph (`OnnxStaticInt8`):
  activations uint8 with scales fixed ahead of time from Korean calibration text
  (`kobert.calibration`, as openvino-int8), weights int8 per channel (U8S8, which MLAS runs
  on VNNI and AMX). Only MatMul/Gemm are quantized; embeddings, LayerNorm, Softmax and GELU
  stay float.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from pathlib import Path

import onnx

from kobert.canonical import CanonicalWeights
from kobert.config import INPUTS
from kobert.exporters import ExportedArtifact

APPROXIMATE_GELU_OPS = ("FastGelu", "GemmFastGelu", "QuickGelu")


def optimize(source: Path, weights: CanonicalWeights):
    """onnxruntime.transformers' BERT fusions with exact GELU; returns its OnnxModel."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    options.enable_gelu_approximation = False
    options.enable_gemm_fast_gelu = False
    config = weights.config
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    model = optimizer.optimize_model(str(source), model_type="bert", num_heads=config.num_attention_heads,
                                     hidden_size=config.hidden_size, optimization_options=options)
    approximated = [n.name or n.op_type for n in model.model.graph.node if n.op_type in APPROXIMATE_GELU_OPS]
    if approximated:
        raise RuntimeError(f"{source}: the fused graph approximates GELU ({', '.join(approximated[:3])}); "
                           "an approximated GELU is a different tier")
    return model


def fp32_source(export_dir: Path) -> Path:
    """The fp32 ONNX artifact every ONNX tier is built from."""
    source = export_dir / "onnx" / "model.onnx"
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no fp32 ONNX here; export the 'onnx' artifact first")
    return source


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(collections.Counter(n.op_type for n in model.graph.node).items()))


@dataclass(frozen=True)
class OnnxTier:
    """One tier: `export(weights, export_dir)` like every exporter module."""

    name: str
    tier: str

    def export(self, weights: CanonicalWeights, export_dir: Path) -> ExportedArtifact:
        export_dir = Path(export_dir)
        source = fp32_source(export_dir)
        target = export_dir / self.name / "model.onnx"
        target.parent.mkdir(parents=True, exist_ok=True)
        fused = optimize(source, weights)
        fusions = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
        extra = {"tier": self.tier, "fusions": fusions}
        if self.name == "onnx-optimized":
            fused.save_model_to_file(str(target))
        elif self.name == "onnx-fp16":
            fused.convert_float_to_float16(keep_io_types=True)
            fused.save_model_to_file(str(target))
        elif self.name == "onnx-int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            fused_path = target.with_name("fused.onnx")
            fused.save_model_to_file(str(fused_path))
            # Per-channel weight scales: on a random-init small preset (8 x 40 tokens) they cut
            # max-abs on logits from 4.5e-3 to 3.0e-3 and on pooled output from 2.0e-2 to 1.8e-2.
            quantize_dynamic(fused_path, target, per_channel=True, weight_type=QuantType.QInt8)
            fused_path.unlink()
            extra.update({"quantization": "dynamic", "weight_type": "int8", "per_channel": True})
        else:
            raise ValueError(f"unknown ONNX tier {self.name!r}")
        return onnx_artifact(self.name, weights, target, extra)


def onnx_artifact(name: str, weights: CanonicalWeights, target: Path, extra: dict) -> ExportedArtifact:
    """The manifest entry of one ONNX tier: its graph, the opset and op counts it was written with."""
    model = onnx.load(str(target), load_external_data=False)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return ExportedArtifact(
        name=name,
        files=[f"{name}/model.onnx"],
        inputs=[{"name": input_name, "dtype": dtype} for input_name, dtype in INPUTS],
        outputs=list(weights.config.output_names),
        framework=f"onnxruntime {_ort_version()}",
        extra={"opset": opset, **extra, "op_counts": op_counts(model)},
    )


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


optimized = OnnxTier("onnx-optimized", "fp32-fused")
fp16 = OnnxTier("onnx-fp16", "fp16")
int8 = OnnxTier("onnx-int8", "int8")


# The ops quantized statically. The QDQ quantizer cannot see inside the fused Attention op, so the
# unfused graph is quantized, and only its matrix products: Gather (embeddings), LayerNormalization,
# Where and Reshape/Transpose, which it would quantize by default, stay float (on a tiny model, pooled
# cosine to fp32 on Korean text 0.99967 with these ops, 0.99916 with every op it can quantize).
STATIC_OPS = ("MatMul", "Gemm")


@dataclass(frozen=True)
class OnnxStaticInt8:
    """The static QDQ tier: `export(weights, export_dir, calibration)` (a `Target` with calibrated=True)."""

    name: str = "onnx-int8-static"

    def export(self, weights: CanonicalWeights, export_dir: Path, calibration) -> ExportedArtifact:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        export_dir = Path(export_dir)
        source = fp32_source(export_dir)
        target = export_dir / self.name / "model.onnx"
        target.parent.mkdir(parents=True, exist_ok=True)
        prepared = target.with_name("prepared.onnx")
        # Shapes known, constants folded: what the quantizer reads. ONNX shape inference only: the symbolic
        # one stops at the dynamo graph ("Incomplete symbolic shape inference").
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        # Min-max ranges: ORT's histogram calibrators (percentile, entropy) stack every row's activations into
        # one array and fail on rows of different lengths, which calibration rows of real text are.
        quantize_static(prepared, target, calibration_reader(calibration.items), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        op_types_to_quantize=list(STATIC_OPS), calibrate_method=CalibrationMethod.MinMax)
        prepared.unlink()
        return onnx_artifact(self.name, weights, target, {
            "tier": "int8",
            "quantization": {"method": "onnxruntime static QDQ", "activation_type": "uint8", "weight_type": "int8",
                             "per_channel": True, "ops": list(STATIC_OPS), "calibrate_method": "minmax",
                             "source": calibration.source, "rows": len(calibration.items)},
        })  # no accuracy control: the gates judge


def calibration_reader(items: list[dict]):
    """ONNX Runtime's CalibrationDataReader over the calibration rows, one row per call."""
    from onnxruntime.quantization import CalibrationDataReader

    class Rows(CalibrationDataReader):
        def __init__(self):
            self.rows = iter(items)

        def get_next(self):
            return next(self.rows, None)

    return Rows()


int8_static = OnnxStaticInt8()
