"""The tf-text runtime: the text-in SavedModel (`kobert.exporters.tf_text`), texts through its own graph.

One artifact, two ways in, and each API call takes the one it means:
- `run(input_ids, ...)` (arrays in) calls the `serving_ids` signature, the
  same id signature as the `tf` target. Parity feeds it the golden id arrays
  exactly as it feeds every other artifact, and judges it by the fp32 gate.
- `encode`, `stream`, and so `logits`, `embed`, `classify` and `kobert run`
  (texts in) go through the in-graph tokenizer (`tokenize`, `serving_default`,
  `serving_pair`): what a TensorFlow user who sends strings gets, not kobert's
  Python tokenizer. Parity checks that path too (`check_text_path`): its ids
  against the Python tokenizer's on the golden texts, its outputs by the gate.

tensorflow_text must be imported before the SavedModel is loaded (it registers
the SentencePiece ops the graph uses), so it is imported here, never at
`import kobert` time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from kobert.encoding import WINDOW_BATCHES, check_text, length_sorted_batches, windows
from kobert.progress import native_stderr_quieted
from kobert.runtimes.base import DEFAULT_BATCH_SIZE, _row, _texts
from kobert.runtimes.tensorflow import TensorFlowRuntime
from kobert.runtimes.tf_logging import import_tensorflow

tf = import_tensorflow()  # quiet unless --verbose: a plain `import tensorflow` prints the oneDNN notice
try:
    with native_stderr_quieted():  # tensorflow_text's own library logs TensorFlow's start-up lines again
        import tensorflow_text  # noqa: F401  (registers the ops the SavedModel needs)
except ImportError:
    raise ImportError("the tf-text runtime needs tensorflow-text: pip install --no-deps tensorflow-text==2.21.1 "
                      "(see ci/setup.sh)") from None

ID_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class TFTextRuntime(TensorFlowRuntime):
    name = "tf-text"
    default_artifact = "tf-text"
    #: texts are tokenized by the artifact itself; parity checks that path (kobert.parity.check_text_path)
    tokenizes_in_graph = True

    def _open(self, files: list[Path]) -> None:
        super()._open(files)  # the id signature, as the tf runtime opens it
        signatures = self._model.signatures
        try:
            self._text_signature = signatures[self.entry["text_signature"]]
            self._pair_signature = signatures[self.entry["pair_signature"]]
        except KeyError as e:
            raise ValueError(f"{files[0]}: SavedModel has no text signature {e}; it has {', '.join(signatures)}") from None

    # --- texts in, through the graph ---------------------------------------------

    def run_texts(self, texts: list[str], pairs: list[str] | None = None) -> dict[str, np.ndarray]:
        """The text signature on one batch: the model's outputs plus the int64 ids it built."""
        feeds = self._text_feeds(texts, pairs)
        signature = self._text_signature if pairs is None else self._pair_signature
        outputs = signature(**feeds)
        result = {name: outputs[name].numpy().astype(np.float32, copy=False) for name in self.output_names}
        return {**result, **{name: outputs[name].numpy() for name in ID_NAMES}}

    def encode(self, texts: list[str], pairs: list[str] | None = None) -> dict[str, np.ndarray]:
        """The ids the graph builds (its `tokenize` / `tokenize_pair`), padded to the longest row."""
        feeds = self._text_feeds(texts, pairs)
        encoded = self._model.tokenize(**feeds) if pairs is None else self._model.tokenize_pair(**feeds)
        return {name: encoded[name].numpy() for name in ID_NAMES}

    def stream(self, texts: Iterable[str], batch_size: int = DEFAULT_BATCH_SIZE,
               pairs: Iterable[str] | None = None) -> Iterator[tuple[str, dict[str, np.ndarray], np.ndarray]]:
        """As `Runtime.stream`, with the graph tokenizing: batches sorted by characters, not tokens."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rows = texts if pairs is None else zip(texts, pairs)
        for window in windows(rows, batch_size * WINDOW_BATCHES):
            firsts = window if pairs is None else [a for a, _ in window]
            seconds = None if pairs is None else [b for _, b in window]
            # Checked here, numbered within the window as `Runtime.stream` numbers them, not within a sorted batch.
            firsts = [check_text(t, f"text {i}") for i, t in enumerate(firsts)]
            seconds = None if seconds is None else [check_text(t, f"pair {i}") for i, t in enumerate(seconds)]
            sizes = [len(a) + (0 if seconds is None else len(seconds[i])) for i, a in enumerate(firsts)]
            results: list = [None] * len(window)
            for batch in length_sorted_batches(sizes, batch_size):
                outputs = self.run_texts([firsts[i] for i in batch],
                                         None if seconds is None else [seconds[i] for i in batch])
                mask = outputs["attention_mask"]
                for k, i in enumerate(batch):
                    length = int(mask[k].sum())
                    results[i] = (firsts[i], {name: _row(outputs[name][k], name, length, self.config)
                                              for name in self.output_names}, mask[k, :length])
            yield from results

    def classify(self, texts: Iterable[str], pairs: Iterable[str] | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> list[dict]:
        """As `Runtime.classify`, through the graph's own tokenizer: the same path as `logits` and `embed`.

        `entities` and `answer` stay on kobert's Python tokenizer: they need each token's character
        offsets and, for long contexts, overlapping windows, which the graph does not give. Their ids are
        the graph's wherever parity's text-path check holds (the golden texts, ties excepted).
        """
        from kobert import tasks

        tasks._require_head(self, "sequence_classification", "classify")
        rows = self.stream(_texts(texts), batch_size, None if pairs is None else _texts(pairs))
        return [tasks.classification(outputs["logits"], self.config.id2label) for _, outputs, _ in rows]

    def _text_feeds(self, texts, pairs) -> dict[str, tf.Tensor]:
        texts = [texts] if isinstance(texts, str) else list(texts)
        texts = [check_text(t, f"text {i}") for i, t in enumerate(texts)]
        if not texts:
            raise ValueError("no text to encode")
        feeds = {"text": tf.constant(texts, dtype=tf.string)}
        if pairs is not None:
            pairs = [pairs] if isinstance(pairs, str) else list(pairs)
            if len(pairs) != len(texts):
                raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs")
            feeds["text_pair"] = tf.constant([check_text(t, f"pair {i}") for i, t in enumerate(pairs)], dtype=tf.string)
        return feeds
