"""Texts to model inputs, straight from the Rust `tokenizers` backend into numpy.

What every runtime (and a serving handler that has only `tokenizers` and numpy)
uses to encode text: no transformers import, no `BatchEncoding`, no Python
lists per token. The result equals `PreTrainedTokenizerFast(texts, pairs,
padding=True, truncation=True, max_length=...)` (tested), because it runs the
same backend with the same truncation settings (longest first, right side).

Streaming helpers live here too: texts are taken in bounded windows, sorted by
length inside a window so each batch pads little, and the results are given
back in input order, so memory stays flat in the number of texts.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

# How many batches one sorting window holds: long enough that sorting saves padding,
# short enough that a window's outputs stay small. 32 measured 17 % more documents/s than 8 on the
# 50,000 NSMC test reviews through ONNX Runtime at batch 32 (760 against 647), for 7 MB more peak RSS
# (`benchmarks/throughput.py --sweep`).
WINDOW_BATCHES = 32


def check_text(text, where: str) -> str:
    """`text` if it is a str that is valid Unicode; else one clear ValueError naming it."""
    if not isinstance(text, str):
        raise ValueError(f"{where}: expected a str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{where}: not valid Unicode ({e.reason} at character {e.start}: "
                         f"{text[max(0, e.start - 10):e.start]!r}...)") from None
    return text


class TextEncoder:
    """A tokenizer directory's `tokenizer.json` as a text -> int64 arrays encoder."""

    def __init__(self, tokenizer_dir: str | Path, max_length: int, vocab_size: int | None = None):
        from tokenizers import Tokenizer

        from kobert.tokenizer import split_words

        tokenizer_dir = Path(tokenizer_dir)
        path = tokenizer_dir / "tokenizer.json"
        if not path.is_file():
            raise ValueError(f"{tokenizer_dir}: no tokenizer.json")
        self.backend = Tokenizer.from_file(str(path))
        split_words(self.backend)  # an export made before words: same ids, now with word_ids (QA alignment)
        # A tokenizer may know a shorter length than the positions: the length its model was trained at.
        self.max_length = min(max_length, _model_max_length(tokenizer_dir, max_length))
        self.backend.no_padding()
        self.backend.enable_truncation(self.max_length)
        self.pad_id = self.backend.token_to_id("[PAD]")
        if self.pad_id is None:
            raise ValueError(f"{path}: the tokenizer has no [PAD] token")
        size = self.backend.get_vocab_size(with_added_tokens=True)
        if vocab_size is not None and size > vocab_size:
            raise ValueError(f"{path}: the tokenizer has {size} ids, more than the model's vocabulary of {vocab_size}")
        self.unk_id = self.backend.token_to_id("[UNK]")
        self.cls_id = self.backend.token_to_id("[CLS]")
        # Question answering truncates differently (only the context, in overlapping windows): its
        # own copy of the backend per (length, stride), so this one's settings never change under a thread.
        self._window_backends: dict[tuple[int, int], object] = {}
        self._window_lock = threading.Lock()

    def encode(self, texts: list[str], pairs: list[str] | None = None) -> dict[str, np.ndarray]:
        """int64 `input_ids`, `attention_mask`, `token_type_ids` of shape (batch, longest)."""
        return self.arrays(self.encodings(texts, pairs, offsets=False))

    def encodings(self, texts: list[str], pairs: list[str] | None = None, offsets: bool = True) -> list:
        """The backend's `Encoding` per text (ids truncated to `max_length`, specials added).

        `offsets=False` (the hot path: `run`, `embed`, `logits`, classification) lets
        `encode_batch_fast` skip computing character offsets (about 2.4 us of 13 per NSMC
        document, measured); entities and NER labels need them.
        """
        texts = [check_text(t, f"text {i}") for i, t in enumerate(texts)]
        if pairs is not None:
            if len(pairs) != len(texts):
                raise ValueError(f"{len(texts)} texts but {len(pairs)} pairs")
            pairs = [check_text(t, f"pair {i}") for i, t in enumerate(pairs)]
        if not texts:
            raise ValueError("no text to encode")
        # Safe from many threads: the backend is configured once here and encoding only reads it.
        encode = self.backend.encode_batch if offsets else getattr(self.backend, "encode_batch_fast",
                                                                    self.backend.encode_batch)
        return encode(texts if pairs is None else list(zip(texts, pairs)))

    def windows(self, questions: list[str], contexts: list[str], max_length: int, stride: int) -> list[list]:
        """Per (question, context): the `Encoding` of every window, question first, context second.

        As transformers' fast tokenizers with `truncation="only_second", stride=stride,
        return_overflowing_tokens=True`: the question is kept whole in every window and the
        context is cut into windows of at most `max_length` tokens that overlap by `stride`.
        """
        if max_length > self.max_length:
            raise ValueError(f"max_seq_len {max_length} exceeds the model's {self.max_length} tokens")
        if not 0 <= stride < max_length:
            raise ValueError(f"doc_stride {stride}: expected 0 <= doc_stride < max_seq_len ({max_length})")
        questions = [check_text(t, f"question {i}") for i, t in enumerate(questions)]
        contexts = [check_text(t, f"context {i}") for i, t in enumerate(contexts)]
        if len(questions) != len(contexts):
            raise ValueError(f"{len(questions)} questions but {len(contexts)} contexts")
        backend = self._window_backend(max_length, stride)
        found = []
        for number, pair in enumerate(zip(questions, contexts)):
            try:
                encoding = backend.encode(*pair)
            except Exception as e:  # tokenizers: the question leaves no room for the context
                raise ValueError(f"question {number}: too long to leave room for the context in "
                                 f"{max_length} tokens ({e})") from None
            found.append([encoding, *encoding.overflowing])
        return found

    def _window_backend(self, max_length: int, stride: int):
        key = (max_length, stride)
        with self._window_lock:
            if key not in self._window_backends:
                from tokenizers import Tokenizer

                backend = Tokenizer.from_str(self.backend.to_str())
                backend.no_padding()
                backend.enable_truncation(max_length, stride=stride, strategy="only_second")
                self._window_backends[key] = backend
            return self._window_backends[key]

    def decode_tokens(self, tokens: list[str]) -> str:
        """Tokens (pieces) back to text by the tokenizer's decoder, as transformers' `convert_tokens_to_string`."""
        decoder = self.backend.decoder
        return decoder.decode(tokens) if decoder is not None else " ".join(tokens)

    def arrays(self, encodings: list) -> dict[str, np.ndarray]:
        """Encodings padded with [PAD] to the longest of them, as int64 arrays."""
        return pad_encodings(encodings, self.pad_id)


def pad_encodings(encodings: list, pad_id: int) -> dict:
    """`tokenizers` Encodings padded with `pad_id` to the longest of them, as int64 arrays.

    Filled in one step per array (the valid positions of a row-major mask take
    the concatenated ids in order), not row by row: measured 2x faster here.
    Self-contained (numpy and itertools only): `kobert package mms` copies this
    function's source into its handler, so serving pads exactly as kobert does.
    """
    import itertools

    lengths = np.fromiter(map(len, encodings), dtype=np.int64, count=len(encodings))
    valid = np.arange(int(lengths.max())) < lengths[:, None]
    total = int(lengths.sum())
    ids = np.full(valid.shape, pad_id, dtype=np.int64)
    ids[valid] = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), np.int64, total)
    types = np.zeros_like(ids)
    if any(e.n_sequences > 1 for e in encodings):  # only a pair has token types other than 0
        types[valid] = np.fromiter(itertools.chain.from_iterable(e.type_ids for e in encodings), np.int64, total)
    return {"input_ids": ids, "attention_mask": valid.astype(np.int64), "token_type_ids": types}


def _model_max_length(tokenizer_dir: Path, default: int) -> int:
    config = tokenizer_dir / "tokenizer_config.json"
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("model_max_length", default)
    except (OSError, ValueError, AttributeError):
        return default
    return int(value) if isinstance(value, (int, float)) and 0 < value < 1e9 else default


def windows(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of at most `size` items, read lazily."""
    window = []
    for item in items:
        window.append(item)
        if len(window) == size:
            yield window
            window = []
    if window:
        yield window


def length_sorted_batches(lengths: list[int], batch_size: int) -> Iterator[list[int]]:
    """Row indices in batches of similar length (longest first), covering every row once."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]
