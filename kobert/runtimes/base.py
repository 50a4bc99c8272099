"""The one runtime API, framework-free.

A `Runtime` wraps one artifact of an export directory. Subclasses (one module
per framework) implement only `_open` and `_forward` (and `raw_session` /
`raw_feed`, the framework's own call, for the benchmark); everything else
lives here, once: file integrity, input checking, dtype casting, tokenisation,
batching, pooling.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from kobert.checkpoint import sha256_file
from kobert.config import INPUT_NAMES, KoBertConfig
from kobert.encoding import WINDOW_BATCHES, TextEncoder, length_sorted_batches, windows

DEFAULT_BATCH_SIZE = 32
# One sentence embedding by default everywhere (`embed`, `similarity`, `kobert run --output embeddings`): the
# mean over valid tokens, the vector the lossy tiers' cosine gate judges and the bi-encoder KorSTS scores.
DEFAULT_POOLING = "mean"


class IntegrityError(ValueError):
    """A file of an export differs from what its manifest recorded (or escapes the export folder)."""


def read_manifest(export_dir: str | Path) -> dict:
    path = Path(export_dir) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{export_dir}: no manifest.json (not a kobert export directory)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("artifacts"), dict):
        raise ValueError(f"{path}: not a kobert manifest (no 'artifacts' object)")
    return manifest


def inside(export_dir: Path, relative: str) -> Path:
    """`export_dir / relative`, refusing a manifest path that resolves outside the export folder."""
    root = export_dir.resolve()
    path = (root / relative).resolve()
    if not isinstance(relative, str) or Path(relative).is_absolute() or not path.is_relative_to(root):
        raise IntegrityError(f"{export_dir}: manifest path {relative!r} resolves outside the export folder")
    return path


def files_under(export_dir: Path, relative: str) -> list[str]:
    """Every file of a manifest path (a file, or a folder's files), relative to the export folder."""
    path = inside(export_dir, relative)
    found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return [str(p.relative_to(export_dir.resolve())) for p in found]


def verify_files(export_dir: str | Path, entry: dict, what: str) -> None:
    """Every file the entry names must exist, be listed in its sha256 table, and match it."""
    export_dir = Path(export_dir)
    digests = entry.get("sha256")
    if not isinstance(digests, dict) or not digests:
        raise IntegrityError(f"{export_dir}: manifest records no sha256 for {what} (re-export, or skip with --no-verify)")
    present = {f for relative in entry["files"] for f in files_under(export_dir, relative)}
    for relative in sorted(present | set(digests)):
        if relative not in digests:
            raise IntegrityError(f"{export_dir / relative}: not in the manifest's sha256 for {what} (added after export?)")
        path = inside(export_dir, relative)
        if not path.is_file():
            raise IntegrityError(f"{export_dir / relative}: missing (the manifest lists it for {what})")
        if sha256_file(path) != digests[relative]:
            raise IntegrityError(f"{export_dir / relative}: sha256 differs from the manifest ({what} was modified)")


def prepare_inputs(input_ids, attention_mask=None, token_type_ids=None,
                   config: KoBertConfig | None = None) -> dict[str, np.ndarray]:
    """Check and normalise model inputs to int64 arrays of shape (batch, length).

    Values are checked here, before any framework sees them, so every runtime
    refuses the same inputs with the same error (frameworks differ: MXNet
    clamps ids, ONNX Runtime wraps -1, torch and TF raise their own errors).
    """
    arrays = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
    ids = np.asarray(input_ids)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"input_ids: expected shape (batch, length) with both > 0, got {np.shape(input_ids)}")
    max_length = 512 if config is None else config.max_position_embeddings
    if ids.shape[1] > max_length:
        raise ValueError(f"input_ids: length {ids.shape[1]} exceeds the model's {max_length} positions")
    defaults = {"attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    out = {}
    for name in INPUT_NAMES:
        value = arrays[name]
        array = defaults[name] if value is None else np.asarray(value)
        if array.ndim == 1:
            array = array[None, :]
        if array.shape != ids.shape:
            raise ValueError(f"{name}: shape {array.shape} differs from input_ids {ids.shape}")
        if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
            raise ValueError(f"{name}: expected integer ids (int32 or int64), got {array.dtype}")
        out[name] = array.astype(np.int64)
    if config is not None:
        _check_range(out["input_ids"], "input_ids", config.vocab_size, "the vocabulary")
        _check_range(out["token_type_ids"], "token_type_ids", config.type_vocab_size, "the token types")
        _check_range(out["attention_mask"], "attention_mask", 2, "a mask (0 or 1)")
    return out


def _check_range(array: np.ndarray, name: str, size: int, what: str) -> None:
    bad = (array < 0) | (array >= size)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}: value {int(array[row, column])} at [{row}, {column}] is outside [0, {size}) "
                         f"of {what}")


class Runtime:
    """One artifact, one API: `run` (arrays); `embed`, `logits`, `stream` (texts); `classify`, `entities`,
    `answer`, `similarity` (task outputs, as transformers' pipelines give them)."""

    #: the runtime's name as `load(..., runtime=...)` spells it
    name = "base"
    #: the manifest artifact this runtime opens when none is named
    default_artifact = ""

    def __init__(self, export_dir: str | Path, artifact: str | None = None, verify: bool = True,
                 threads: int | None = None):
        """`threads`: the intra-op threads the framework may use (None: its own default), so a server or a
        Spark task can size it. torch and TensorFlow hold one setting per process, so there it is process-wide."""
        from kobert import registry

        self.export_dir = Path(export_dir)
        self.manifest = read_manifest(self.export_dir)
        try:
            self.config = KoBertConfig.from_hf_dict(self.manifest.get("config"), source=f"{self.export_dir}/manifest.json")
        except ValueError as e:
            raise ValueError(f"config: {e}") from None
        self.artifact = artifact or self._artifact_here()
        self.entry = self._manifest_entry()
        opened_by = registry.runtimes_for(self.artifact)
        if self.name not in opened_by:
            raise ValueError(f"artifact {self.artifact!r} is opened by runtime {' or '.join(opened_by)}, "
                             f"not {self.name!r}")
        self.verify = verify
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads: expected a positive integer or None, got {threads!r}")
        self.threads = threads
        if verify:
            verify_files(self.export_dir, self.entry, f"artifact {self.artifact!r}")
        self.output_names = list(self.entry["outputs"])
        self.max_length = self.config.max_position_embeddings
        self._encoder = self._tokenizer = None
        self._tokenizer_lock = threading.Lock()
        self._open([inside(self.export_dir, f) for f in self.entry["files"]])

    def _artifact_here(self) -> str:
        """The runtime's default artifact; where the export lacks it, the first one here this runtime opens
        (`--runtime onnx` on an export holding only onnx-int8 runs that), said on stderr."""
        from kobert import registry
        from kobert.progress import say

        if self.default_artifact in self.manifest["artifacts"]:
            return self.default_artifact
        opened = [name for name, target in registry.TARGETS.items()
                  if target.runtime == self.name and name in self.manifest["artifacts"]]
        if not opened:
            return self.default_artifact  # the manifest-entry check names what the export has
        say(f"{self.export_dir} has no {self.default_artifact!r} artifact; runtime {self.name} runs "
            f"{opened[0]!r} (pick another with --artifact)")
        return opened[0]

    def _manifest_entry(self) -> dict:
        if self.artifact == "reference":
            entry = self.manifest.get("reference")
        else:
            entry = self.manifest["artifacts"].get(self.artifact)
        if not isinstance(entry, dict) or not isinstance(entry.get("files"), list):
            have = ", ".join(self.manifest["artifacts"]) or "none"
            raise ValueError(f"{self.export_dir}: manifest has no {self.artifact!r} artifact (it has {have})")
        return entry

    # --- what a framework module implements ----------------------------------

    def _open(self, files: list[Path]) -> None:
        raise NotImplementedError

    def _forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """inputs: int64 arrays named as INPUT_NAMES. Returns float32 arrays by output name."""
        raise NotImplementedError

    def raw_session(self):
        """The framework's own call on this artifact, `call(feed)`, with no kobert code around it."""
        raise NotImplementedError(f"runtime {self.name!r} offers no raw session")

    def raw_feed(self, inputs: dict[str, np.ndarray]):
        """`inputs` (int64 arrays) converted once into what `raw_session()` takes."""
        return {spec["name"]: np.asarray(inputs[spec["name"]], dtype=spec["dtype"]) for spec in self.entry["inputs"]}

    # --- arrays in, arrays out -----------------------------------------------

    def run(self, input_ids, attention_mask=None, token_type_ids=None) -> dict[str, np.ndarray]:
        inputs = prepare_inputs(input_ids, attention_mask, token_type_ids, self.config)
        outputs = self._forward(inputs)
        return {name: np.asarray(outputs[name], dtype=np.float32) for name in self.output_names}

    # --- texts in ---------------------------------------------------------------

    @property
    def text_encoder(self) -> TextEncoder:
        """The export's tokenizer as a numpy encoder (made once, safely under concurrent first calls)."""
        if self._encoder is None:
            with self._tokenizer_lock:
                if self._encoder is None:
                    self._encoder = TextEncoder(self._tokenizer_dir(), self.max_length, self.config.vocab_size)
        return self._encoder

    @property
    def tokenizer(self):
        """The export's tokenizer as a transformers `PreTrainedTokenizerFast`."""
        if self._tokenizer is None:
            with self._tokenizer_lock:
                if self._tokenizer is None:
                    from kobert.tokenizer import get_tokenizer

                    self._tokenizer = get_tokenizer(self._tokenizer_dir())
        return self._tokenizer

    def _tokenizer_dir(self) -> Path:
        name = self.manifest.get("tokenizer")
        if not name:
            raise ValueError(f"{self.export_dir}: this export has no tokenizer (export with --tokenizer PATH)")
        if self.verify and "tokenizer_sha256" in self.manifest:
            verify_files(self.export_dir, {"files": [name], "sha256": self.manifest["tokenizer_sha256"]}, "the tokenizer")
        return inside(self.export_dir, name)

    def encode(self, texts: list[str], pairs: list[str] | None = None) -> dict[str, np.ndarray]:
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(pairs, str):
            pairs = [pairs]
        return self.text_encoder.encode(list(texts), None if pairs is None else list(pairs))

    def stream(self, texts: Iterable[str], batch_size: int = DEFAULT_BATCH_SIZE,
               pairs: Iterable[str] | None = None) -> Iterator[tuple[str, dict[str, np.ndarray], np.ndarray]]:
        """(text, its outputs, its attention mask) per text, in input order, from any iterable.

        Per-token outputs and the mask are cut to the text's own length.
        """
        rows = texts if pairs is None else zip(texts, pairs)

        def encode(window):
            firsts = window if pairs is None else [a for a, _ in window]
            seconds = None if pairs is None else [b for _, b in window]
            return [[encoding] for encoding in self.text_encoder.encodings(firsts, seconds, offsets=False)]

        for row, [(encoding, outputs)] in self.stream_encoded(rows, encode, batch_size):
            yield (row if pairs is None else row[0]), outputs, np.ones(len(encoding.ids), dtype=np.int64)

    def stream_encoded(self, rows: Iterable, encode, batch_size: int = DEFAULT_BATCH_SIZE,
                       keep: tuple[str, ...] | None = None) -> Iterator[tuple[object, list[tuple[object, dict]]]]:
        """(row, [(encoding, its outputs) for each of the row's encodings]) in input order.

        `encode(rows)` gives each row's list of tokenizer `Encoding`s: one for a text or
        a pair, several for a question whose context runs over windows. `keep` names
        the outputs worth holding (all when None): a long context's windows need only
        their logits, not their hidden states.

        Rows are read in windows of `WINDOW_BATCHES` batches; inside a window their
        encodings are sorted by length so a batch pads little, then given back in
        input order. Memory holds one window, whatever the number of rows.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        names = [n for n in self.output_names if keep is None or n in keep]
        for window in windows(rows, batch_size * WINDOW_BATCHES):
            per_row = encode(window)
            flat = [(row, position, encoding) for row, encodings in enumerate(per_row)
                    for position, encoding in enumerate(encodings)]
            results = [[None] * len(encodings) for encodings in per_row]
            for batch in length_sorted_batches([len(e.ids) for _, _, e in flat], batch_size):
                outputs = self.run(**self.text_encoder.arrays([flat[i][2] for i in batch]))
                for k, i in enumerate(batch):
                    row, position, encoding = flat[i]
                    length = len(encoding.ids)
                    results[row][position] = (encoding, {name: _row(outputs[name][k], name, length, self.config)
                                                         for name in names})
            yield from zip(window, results)

    # --- task outputs (the decoding is kobert.tasks, framework-free) ------------------

    def classify(self, texts: Iterable[str], pairs: Iterable[str] | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> list[dict]:
        """{"label", "score"} per text (or pair), as transformers' text-classification pipeline;
        {"score"} (the raw logit) for a 1-label regression head."""
        from kobert import tasks

        rows = tasks.iter_labels(self, _texts(texts), None if pairs is None else _texts(pairs), batch_size)
        return [label for _, label in rows]

    def entities(self, texts: Iterable[str], batch_size: int = DEFAULT_BATCH_SIZE,
                 aggregation: str = "simple") -> list[list[dict]]:
        """Per text, its entities {"entity_group", "score", "word", "start", "end"} (character
        offsets into the text), as transformers' token-classification pipeline with
        aggregation_strategy=`aggregation`: "simple" (the default here; the pipeline's own
        default "none" gives one {"entity", "score", "index", ...} per token), "first",
        "average", "max" or "none" (see kobert.tasks.token_entities)."""
        from kobert import tasks

        rows = tasks.iter_entities(self, _texts(texts), batch_size, aggregation=aggregation)
        return [entities for _, entities in rows]

    def answer(self, questions: Iterable[str], contexts: Iterable[str], doc_stride: int = 128,
               max_answer_len: int = 30, max_seq_len: int = 384,
               batch_size: int = DEFAULT_BATCH_SIZE, align_to_words: bool = True) -> list[dict]:
        """{"answer", "score", "start", "end"} per (question, context), long contexts read in
        windows overlapping by `doc_stride`, as transformers' question-answering pipeline:
        `align_to_words` (its default) widens an answer to whole whitespace words, False keeps
        the tokens' offsets (see kobert.tasks.best_answer)."""
        from kobert import tasks

        rows = tasks.paired(_texts(questions), _texts(contexts), ("questions", "contexts"))
        answers = tasks.iter_answers(self, rows, doc_stride=doc_stride, max_answer_len=max_answer_len,
                                     max_seq_len=max_seq_len, batch_size=batch_size, align_to_words=align_to_words)
        return [answer for _, answer in answers]

    def similarity(self, a: Iterable[str], b: Iterable[str], pooling: str = DEFAULT_POOLING,
                   batch_size: int = DEFAULT_BATCH_SIZE) -> list[float]:
        """Cosine similarity of the sentence embeddings of a[i] and b[i]."""
        from kobert import tasks

        return list(tasks.iter_similarities(self, _texts(a), _texts(b), pooling, batch_size))

    def embed(self, texts: Iterable[str], pooling: str = DEFAULT_POOLING, normalize: bool = False,
              batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """One sentence embedding per text: the mean over valid tokens (the default, as `similarity`
        and `kobert run`), or the [CLS] vector (`pooling="cls"`)."""
        vectors = [pool(outputs["last_hidden_state"], mask, pooling)
                   for _, outputs, mask in self.stream(_texts(texts), batch_size)]
        embeddings = np.stack(vectors) if vectors else np.zeros((0, self.config.hidden_size), np.float32)
        if normalize:
            embeddings = embeddings / np.maximum(np.linalg.norm(embeddings, axis=-1, keepdims=True), 1e-12)
        return embeddings

    def logits(self, texts: Iterable[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray | dict[str, np.ndarray]:
        """The head's outputs per text: an array of logits, or a dict for start/end logits (QA).

        Per-token outputs are padded with NaN to the longest text's length (each
        text is batched with texts of similar length, so nothing else is padding).
        """
        names = self.config.head_outputs
        if not names:
            raise ValueError(f"{self.export_dir}: this model has no task head, so no logits (use embed)")
        rows = [[outputs[name] for name in names] for _, outputs, _ in self.stream(_texts(texts), batch_size)]
        stacked = {name: _stack([r[k] for r in rows]) for k, name in enumerate(names)}
        return stacked[names[0]] if len(names) == 1 else stacked

    def close(self) -> None:
        """Release framework resources (the MXNet worker process, for one)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def pool(hidden: np.ndarray, mask: np.ndarray, pooling: str) -> np.ndarray:
    """One text's (length, hidden) states -> its sentence vector."""
    if pooling == "cls":
        return hidden[0]
    if pooling == "mean":
        weights = np.asarray(mask, dtype=np.float32)[:len(hidden), None]
        return (hidden * weights).sum(axis=0) / max(float(weights.sum()), 1.0)
    raise ValueError(f"pooling {pooling!r}: expected 'cls' or 'mean'")


def _texts(texts) -> Iterable[str]:
    return [texts] if isinstance(texts, str) else texts


def _row(value: np.ndarray, name: str, length: int, config: KoBertConfig) -> np.ndarray:
    """One text's slice of a batch output: per-token outputs cut to the text's own length."""
    return value[:length] if name in config.per_token_outputs else value


def _stack(rows: list[np.ndarray]) -> np.ndarray:
    if not rows:
        return np.zeros((0,), np.float32)
    width = max(r.shape[0] for r in rows) if rows[0].ndim else 0
    if all(r.shape == rows[0].shape for r in rows):
        return np.stack(rows)
    padded = np.full((len(rows), width, *rows[0].shape[1:]), np.nan, dtype=np.float32)
    for i, r in enumerate(rows):
        padded[i, :r.shape[0]] = r
    return padded
