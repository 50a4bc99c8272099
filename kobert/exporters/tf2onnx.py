"""ONNX from the TensorFlow SavedModel, through tf2onnx: a second, independent ONNX path.

Reads `export_dir/tf` (written by `kobert.exporters.tensorflow`) and writes
`export_dir/tf2onnx/model.onnx`. The conversion runs tf2onnx's own command line
(`python -m tf2onnx.convert --saved-model`) in a child process: that is the
interface tf2onnx documents for SavedModels, and it keeps tf2onnx's graph-mode
session out of the caller's TensorFlow state.

The result is validated before it is returned: `onnx.checker`, and every node
must be an op of the default ONNX domain at the target opset. tf2onnx passes
ops it cannot map straight through (TF 2.21's `tf.nn.gelu` becomes `Erfc`,
which ONNX does not have), producing a file no runtime can load; that is caught
here, not at inference time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx

from kobert.canonical import CanonicalWeights
from kobert.exporters import ExportedArtifact
from kobert.config import INPUT_NAMES

OPSET = 17
SIGNATURE = "serving_default"
# A hung converter is killed after this long (KoBERT-base converts in a few minutes on 2 cores).
CONVERT_TIMEOUT_S = 1800


class ConversionError(RuntimeError):
    """tf2onnx failed, or produced a model that is not valid standard ONNX."""


def convert_savedmodel(savedmodel_dir: Path, onnx_path: Path, opset: int = OPSET) -> None:
    """Run tf2onnx's converter on one SavedModel signature; raise with its log on failure."""
    savedmodel_dir, onnx_path = Path(savedmodel_dir).resolve(), Path(onnx_path).resolve()
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    # -P: never let the working directory shadow the tf2onnx package (this module is tf2onnx.py).
    command = [sys.executable, "-P", "-m", "tf2onnx.convert", "--saved-model", str(savedmodel_dir),
               "--tag", "serve", "--signature_def", SIGNATURE, "--opset", str(opset), "--output", str(onnx_path)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=onnx_path.parent,
                                timeout=CONVERT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ConversionError(f"{savedmodel_dir}: tf2onnx did not finish within {CONVERT_TIMEOUT_S} s "
                              "and was killed") from None
    if result.returncode != 0 or not onnx_path.is_file():
        log = (result.stdout + result.stderr).strip()
        last = (log.splitlines() or ["(no output)"])[-1]  # the CLI's one line; the log file has the rest
        raise ConversionError(f"{savedmodel_dir}: tf2onnx exited with {result.returncode}: {last}\n{log[-4000:]}")


def invalid_ops(model: onnx.ModelProto) -> list[str]:
    """Nodes that are not ops of the default ONNX domain at the model's opset, as 'OpType (name)'."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    bad = []
    for node in model.graph.node:
        known = node.domain in ("", "ai.onnx") and opset is not None and _has_schema(node.op_type, opset)
        if not known:
            bad.append(f"{node.op_type} ({node.name}, domain {node.domain or 'ai.onnx'!r})")
    return bad


def _has_schema(op_type: str, opset: int) -> bool:
    try:
        onnx.defs.get_schema(op_type, opset, "")
        return True
    except onnx.defs.SchemaError:
        return False


def validate(model: onnx.ModelProto, source: str) -> None:
    """Raise ConversionError unless `model` is checker-clean, standard-domain-only ONNX."""
    bad = invalid_ops(model)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ConversionError(f"{source}: not standard ONNX; ops outside the default domain: {shown}")
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ConversionError(f"{source}: onnx.checker rejects the model: {e}") from None


def _order_io(model: onnx.ModelProto, output_names: list[str], source: str) -> None:
    """Put graph inputs and outputs in kobert's call order (tf2onnx sorts them by name)."""
    for field, wanted in (("input", list(INPUT_NAMES)), ("output", output_names)):
        values = {v.name: v for v in getattr(model.graph, field)}
        if sorted(values) != sorted(wanted):
            raise ConversionError(f"{source}: graph {field}s are {sorted(values)}, expected {wanted}")
        ordered = [onnx.ValueInfoProto.FromString(values[n].SerializeToString()) for n in wanted]
        del getattr(model.graph, field)[:]
        getattr(model.graph, field).extend(ordered)


def export(weights: CanonicalWeights, export_dir: Path) -> ExportedArtifact:
    """Convert `export_dir/tf` to `export_dir/tf2onnx/model.onnx` and validate it."""
    export_dir = Path(export_dir)
    savedmodel = export_dir / "tf"
    if not (savedmodel / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{savedmodel}: no SavedModel here; export the 'tf' artifact first")
    onnx_path = export_dir / "tf2onnx" / "model.onnx"
    convert_savedmodel(savedmodel, onnx_path)

    output_names = list(weights.config.output_names)
    model = onnx.load(str(onnx_path))
    _order_io(model, output_names, str(onnx_path))
    validate(model, str(onnx_path))
    onnx.save(model, str(onnx_path))

    import tf2onnx  # only for its version string

    return ExportedArtifact(
        name="tf2onnx",
        files=["tf2onnx/model.onnx"],
        inputs=[{"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name}
                for v in model.graph.input],
        outputs=output_names,
        framework=f"tf2onnx {tf2onnx.__version__}",
        extra={"opset": OPSET},
    )
