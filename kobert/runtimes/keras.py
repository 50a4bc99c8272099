"""The keras runtime: the `.keras` file (`kobert.exporters.keras`) opened as a TF user opens it.

`keras.saving.load_model(path)` after `import keras_hub`, nothing else. `run` (ids in) feeds KerasHub's
input names; the encoder outputs come from the model's "backbone" layer, the head's from the model.
A sequence classifier carries its preprocessor: texts then go through it (`tokenizes_in_graph`), and
parity checks its ids against kobert's tokenizer on the golden texts (`kobert.parity.check_text_path`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kobert.runtimes.base import Runtime
from kobert.runtimes.tensorflow import set_tf_threads
from kobert.runtimes.tf_logging import import_tensorflow

tf = import_tensorflow()
try:
    import keras
    import keras_hub  # noqa: F401  (registers the KerasHub classes the file names)
except ImportError:
    raise ImportError("the keras runtime needs keras and keras-hub: pip install 'kobert[keras]' "
                      "(keras-hub --no-deps beside tensorflow-cpu; see ci/setup.sh)") from None

ID_NAMES = ("input_ids", "attention_mask", "token_type_ids")
KERAS_INPUTS = dict(zip(ID_NAMES, ("token_ids", "padding_mask", "segment_ids")))  # as kobert.exporters.keras
ENCODER_OUTPUTS = {"last_hidden_state": "sequence_output", "pooler_output": "pooled_output"}


class KerasRuntime(Runtime):
    name = "keras"
    default_artifact = "keras"

    def _open(self, files: list[Path]) -> None:
        set_tf_threads(self.threads)
        model_file = next(f for f in files if f.suffix == ".keras")
        self._model = keras.saving.load_model(model_file)
        self._backbone = self._model.get_layer("backbone")
        self._preprocessor = getattr(self._model, "preprocessor", None)
        #: texts go through the model's own preprocessor when it has one (kobert.parity.check_text_path)
        self.tokenizes_in_graph = self._preprocessor is not None

    def _forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {KERAS_INPUTS[name]: tf.constant(np.asarray(inputs[name], dtype=np.int32)) for name in ID_NAMES}
        encoded = self._backbone(feeds, training=False)
        outputs = {name: encoded[keras_name] for name, keras_name in ENCODER_OUTPUTS.items() if keras_name in encoded}
        heads = [name for name in self.output_names if name not in ENCODER_OUTPUTS]
        if heads:
            scores = self._model(feeds, training=False)
            outputs.update({"logits": scores} if not isinstance(scores, dict) else scores)
        return {name: np.asarray(outputs[name]) for name in self.output_names}

    def raw_session(self):
        return lambda feed, model=self._model: model(feed, training=False)

    def raw_feed(self, inputs: dict[str, np.ndarray]):
        return {KERAS_INPUTS[name]: tf.constant(np.asarray(inputs[name], dtype=np.int32)) for name in ID_NAMES}

    # --- texts in, through the model's preprocessor (sequence classifiers) ------------------------

    def _preprocess(self, texts: list[str], pairs: list[str] | None) -> dict[str, np.ndarray]:
        """The preprocessor's ids (padded to its sequence length) cut to the longest row, as int64."""
        texts = tf.constant(list(texts), dtype=tf.string)
        # y=None: a bare 2-tuple would be read as (x, y), KerasHub mimicking tf.data
        x = self._preprocessor(texts if pairs is None else (texts, tf.constant(list(pairs), dtype=tf.string)), y=None)
        arrays = {name: np.asarray(x[KERAS_INPUTS[name]]).astype(np.int64) for name in ID_NAMES}
        width = int(arrays["attention_mask"].sum(axis=1).max())
        return {name: array[:, :width] for name, array in arrays.items()}

    def run_texts(self, texts: list[str], pairs: list[str] | None = None) -> dict[str, np.ndarray]:
        """The model's outputs on texts its preprocessor encoded, plus those int64 ids."""
        ids = self._preprocess(texts, pairs)
        return {**self._forward(ids), **ids}
