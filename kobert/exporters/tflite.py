"""TFLite from the TensorFlow SavedModel: "tflite" (fp32) and "tflite-int8" (dynamic range).

Reads `export_dir/tf` (see `kobert.registry`) and writes `export_dir/<name>/model.tflite`
with tf.lite.TFLiteConverter. Inputs keep the SavedModel's dynamic (batch,
length) shape signature; the runtime resizes its input tensors per call.

One rewrite before conversion: the SavedModel builds its (B, 1, 1, T) mask with
`mask[:, tf.newaxis, tf.newaxis, :]`, a StridedSlice with new axes on a tensor
of dynamic shape, which the TFLite builtins cannot express (the converter asks
for the Flex delegate, which the tensorflow pip package's interpreter does not
link). Such a slice only inserts axes, so it is replaced by the same number of
ExpandDims ops in the frozen serving graph; every other op converts as is, and
parity still judges the result against transformers.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kobert.canonical import CanonicalWeights
from kobert.config import INPUT_NAMES, INPUTS
from kobert.exporters import ExportedArtifact
from kobert.runtimes.tf_logging import import_tensorflow

tf = import_tensorflow()

SIGNATURE = "serving_default"


def _const(graph_def, name: str, value: np.ndarray) -> None:
    node = graph_def.node.add()
    node.name, node.op = name, "Const"
    node.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))


def _const_value(nodes: dict, name: str) -> np.ndarray | None:
    node = nodes.get(name.split(":")[0])
    return tf.make_ndarray(node.attr["value"].tensor) if node is not None and node.op == "Const" else None


def expand_new_axis_slices(graph_def) -> int:
    """Replace StridedSlices that only insert axes by ExpandDims chains; returns how many."""
    nodes = {n.name: n for n in graph_def.node}
    rewritten = 0
    for node in list(graph_def.node):
        if node.op != "StridedSlice" or not node.attr["new_axis_mask"].i:
            continue
        a = {k: node.attr[k].i for k in ("begin_mask", "end_mask", "new_axis_mask", "shrink_axis_mask", "ellipsis_mask")}
        strides = _const_value(nodes, node.input[3])
        if a["shrink_axis_mask"] or a["ellipsis_mask"] or strides is None or np.any(strides != 1):
            continue
        spec = len(strides)
        new_axes = [i for i in range(spec) if a["new_axis_mask"] >> i & 1]
        full = all(a["begin_mask"] >> i & 1 and a["end_mask"] >> i & 1 for i in range(spec) if i not in new_axes)
        if not full:
            continue
        source, dtype = node.input[0], node.attr["T"].type
        for k, axis in enumerate(new_axes):  # ascending output positions, so earlier inserts hold
            last = k == len(new_axes) - 1
            _const(graph_def, f"{node.name}/new_axis_{k}", np.array(axis, np.int32))
            target = node if last else graph_def.node.add()
            if not last:
                target.name = f"{node.name}/expand_{k}"
            target.op = "ExpandDims"
            del target.input[:]
            target.input.extend([source, f"{node.name}/new_axis_{k}"])
            target.attr.clear()
            target.attr["T"].type = dtype
            target.attr["Tdim"].type = tf.int32.as_datatype_enum
            source = target.name
        rewritten += 1
    return rewritten


def tflite_ready_savedmodel(savedmodel: Path, workdir: Path) -> tuple[Path, int]:
    """A SavedModel with the same serving signature, its graph frozen and rewritten for TFLite."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    loaded = tf.saved_model.load(str(savedmodel))
    signature = loaded.signatures[SIGNATURE]
    frozen = convert_variables_to_constants_v2(signature)
    graph_def = frozen.graph.as_graph_def()
    rewritten = expand_new_axis_slices(graph_def)
    # frozen.outputs are the signature's outputs flattened (dict keys sorted)
    output_names = sorted(signature.structured_outputs)
    input_specs = signature.structured_input_signature[1]
    fetches = [t.name for t in frozen.outputs]
    feeds = [t.name for t in frozen.inputs]

    def serve(**inputs):
        values = tf.graph_util.import_graph_def(
            graph_def, input_map={name: inputs[name.split(":")[0]] for name in feeds}, return_elements=fetches, name="")
        return {name: tf.identity(v, name=name) for name, v in zip(output_names, values)}

    module = tf.Module()
    module.serve = tf.function(lambda input_ids, attention_mask, token_type_ids: serve(
        input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids),
        input_signature=[input_specs[n] for n in INPUT_NAMES])
    path = workdir / "frozen_savedmodel"
    tf.saved_model.save(module, str(path), signatures={SIGNATURE: module.serve.get_concrete_function()})
    return path, rewritten


@dataclass(frozen=True)
class TFLiteTier:
    name: str
    tier: str
    quantize: bool

    def export(self, weights: CanonicalWeights, export_dir: Path) -> ExportedArtifact:
        export_dir = Path(export_dir)
        savedmodel = export_dir / "tf"
        if not (savedmodel / "saved_model.pb").is_file():
            raise FileNotFoundError(f"{savedmodel}: no SavedModel here; export the 'tf' artifact first")
        target = export_dir / self.name / "model.tflite"
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=export_dir) as work:
            ready, rewritten = tflite_ready_savedmodel(savedmodel, Path(work))
            converter = tf.lite.TFLiteConverter.from_saved_model(str(ready), signature_keys=[SIGNATURE])
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            if self.quantize:  # dynamic range: int8 weights, float activations
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            target.write_bytes(converter.convert())
        extra = {"tier": self.tier, "signature": SIGNATURE, "new_axis_slices_rewritten": rewritten}
        if self.quantize:
            extra.update({"quantization": "dynamic-range", "weight_type": "int8"})
        return ExportedArtifact(
            name=self.name,
            files=[f"{self.name}/model.tflite"],
            inputs=[{"name": name, "dtype": dtype} for name, dtype in INPUTS],
            outputs=list(weights.config.output_names),
            framework=f"tensorflow-lite {tf.__version__}",
            extra=extra,
        )


fp32 = TFLiteTier("tflite", "fp32", quantize=False)
int8 = TFLiteTier("tflite-int8", "int8", quantize=True)
