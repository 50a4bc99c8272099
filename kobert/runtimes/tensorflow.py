"""TensorFlow runtime: runs the SavedModel's `serving_default` signature. No model logic here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kobert.runtimes.base import Runtime
from kobert.runtimes.tf_logging import import_tensorflow

tf = import_tensorflow()


class TensorFlowRuntime(Runtime):
    name = "tf"
    default_artifact = "tf"

    def _open(self, files: list[Path]) -> None:
        set_tf_threads(self.threads)
        signature_name = self.entry.get("signature", "serving_default")
        self._model = tf.saved_model.load(str(files[0]))  # keeps the variables alive
        try:
            self._signature = self._model.signatures[signature_name]
        except KeyError:
            raise ValueError(f"{files[0]}: SavedModel has no signature {signature_name!r}; "
                             f"it has {', '.join(self._model.signatures) or 'none'}") from None
        self._input_dtypes = {spec["name"]: tf.as_dtype(spec["dtype"]) for spec in self.entry["inputs"]}

    def _forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {name: tf.constant(np.asarray(inputs[name], dtype=dtype.as_numpy_dtype))
                 for name, dtype in self._input_dtypes.items()}
        outputs = self._signature(**feeds)
        return {name: outputs[name].numpy().astype(np.float32, copy=False) for name in self.output_names}

    def raw_session(self):
        return lambda feed, signature=self._signature: signature(**feed)

    def raw_feed(self, inputs: dict[str, np.ndarray]):
        return {name: tf.constant(array) for name, array in super().raw_feed(inputs).items()}

    def xla_session(self):
        """The signature compiled with XLA (`jit_compile=True`), for the benchmark's XLA row."""
        compiled = tf.function(lambda **feed: self._signature(**feed), jit_compile=True)
        return lambda feed: compiled(**feed)


def set_tf_threads(threads: int | None) -> None:
    """TensorFlow's intra-op threads, process-wide and fixed at its first op: a later, different request is
    one clear error rather than TensorFlow's RuntimeError."""
    if threads is None or tf.config.threading.get_intra_op_parallelism_threads() == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        current = tf.config.threading.get_intra_op_parallelism_threads() or "its default"
        raise ValueError(f"threads={threads}: TensorFlow already runs with {current} intra-op threads in this "
                         "process (it fixes them at first use); open the first TensorFlow runtime with "
                         "this threads value") from None


def gemm_session(x: np.ndarray, w: np.ndarray):
    """TensorFlow's own float32 MatMul in a `tf.function`, as `call() -> tensor`: the GEMM-ceiling row."""
    tx, tw = tf.constant(x), tf.constant(w)
    matmul = tf.function(lambda: tf.linalg.matmul(tx, tw))
    return matmul
