"""Corpus text -> cleaned documents -> sentences -> token ids in uint16 shards, tokenized once.

Layout of a shard directory (what `pretrain` reads, memory-mapped):

- `shard_00000.bin`: the token stream, raw little-endian uint16. Each document is its
  sentences' tokens followed by one [SEP]; no [CLS] (added when sequences are drawn).
- `shard_00000.starts.npy`: uint32 offsets of every sentence start in that stream, so a
  training sequence can begin at a sentence boundary instead of mid-word.
- `meta.json`: token, document and sentence counts per shard, vocab size, special ids and
  the sha256 of the tokenizer, so pretraining refuses shards made by another tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kobert.encoding import windows

MIN_DOCUMENT_CHARS = 10
DEFAULT_SHARD_TOKENS = 50_000_000  # 100 MB per shard
DOCS_PER_TASK = 64  # documents handed to a worker at a time
META_FILE = "meta.json"
# Regex fallback when kiwipiepy is absent: split after . ! ? followed by whitespace.
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+")
_WHITESPACE = re.compile(r"\s+")


# --- reading and cleaning ------------------------------------------------------


def clean_document(line: str) -> str:
    """NFC, every run of whitespace (tabs, NBSP, newlines) collapsed to one space, trimmed."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", line)).strip()


def iter_documents(corpus_file: str | Path, min_chars: int = MIN_DOCUMENT_CHARS) -> Iterator[str]:
    """Cleaned documents of a plain or .xz text file (one document per line), dropping short lines."""
    path = Path(corpus_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: corpus file not found")
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            doc = clean_document(line)
            if len(doc) >= min_chars:
                yield doc


# --- sentence splitting --------------------------------------------------------


def regex_split(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text) if s]


def splitter_kind(kind: str) -> str:
    """The splitter that `SentenceSplitter(kind)` really uses ('kiwi' falls back to 'regex')."""
    if kind == "kiwi":
        import importlib.util

        return "kiwi" if importlib.util.find_spec("kiwipiepy") else "regex"
    return kind


class SentenceSplitter:
    """kiwipiepy's `split_into_sents` when installed (handles 다/요 endings without punctuation), else a regex."""

    def __init__(self, kind: str = "kiwi"):
        if kind not in ("kiwi", "regex"):
            raise ValueError(f"unknown sentence splitter {kind!r}; expected 'kiwi' or 'regex'")
        self.kiwi = None
        if kind == "kiwi":
            try:
                from kiwipiepy import Kiwi
            except ImportError:
                kind = "regex"
            else:
                self.kiwi = Kiwi(num_workers=0)
        self.kind = kind

    def __call__(self, text: str) -> list[str]:
        if self.kiwi is None:
            return regex_split(text)
        return [s.text for s in self.kiwi.split_into_sents(text)] or [text]


# --- tokenizing (in worker processes) --------------------------------------------

_worker: dict = {}


def _init_worker(tokenizer_path: str | None, splitter: str) -> None:
    from kobert.tokenizer import get_tokenizer

    _worker["tokenizer"] = get_tokenizer(tokenizer_path).backend_tokenizer
    _worker["split"] = SentenceSplitter(splitter)


def _encode_documents(docs: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(token ids ending in [SEP], sentence start offsets) for each document."""
    tokenizer, split = _worker["tokenizer"], _worker["split"]
    sep = tokenizer.token_to_id("[SEP]")
    out = []
    for doc in docs:
        sentences = split(doc)
        encodings = tokenizer.encode_batch(sentences, add_special_tokens=False)
        ids, starts = [], []
        for enc in encodings:
            if enc.ids:
                starts.append(len(ids))
                ids.extend(enc.ids)
        if ids:
            ids.append(sep)
            out.append((np.asarray(ids, dtype=np.uint16), np.asarray(starts, dtype=np.uint32)))
    return out


def tokenizer_sha256(tokenizer) -> str:
    """sha256 of the tokenizer's serialised `tokenizer.json`: same ids iff same hash."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode("utf-8")).hexdigest()


# --- writing shards ---------------------------------------------------------------


class _ShardWriter:
    """Appends documents to shard files; a shard is closed (renamed into place) once it is full."""

    def __init__(self, out: Path, shard_tokens: int):
        self.out, self.shard_tokens = out, shard_tokens
        self.shards: list[dict] = []
        self._open()

    def _open(self) -> None:
        self.name = f"shard_{len(self.shards):05d}"
        self.handle = open(self.out / f"{self.name}.bin.tmp", "wb")
        self.tokens, self.docs, self.starts = 0, 0, []

    def add(self, ids: np.ndarray, starts: np.ndarray) -> None:
        self.handle.write(ids.astype("<u2").tobytes())
        self.starts.append(starts + self.tokens)
        self.tokens += len(ids)
        self.docs += 1
        if self.tokens >= self.shard_tokens:
            self.close()
            self._open()

    def close(self) -> None:
        self.handle.close()
        tmp = self.out / f"{self.name}.bin.tmp"
        if self.tokens == 0:
            tmp.unlink()
            return
        starts = np.concatenate(self.starts).astype(np.uint32)
        np.save(self.out / f"{self.name}.starts.npy", starts)
        os.replace(tmp, self.out / f"{self.name}.bin")
        self.shards.append({"file": f"{self.name}.bin", "tokens": self.tokens, "documents": self.docs,
                            "sentences": int(len(starts))})


def build_shards(
    corpus_files: list[str | Path],
    out_dir: str | Path,
    tokenizer: str | Path | None = None,
    splitter: str = "kiwi",
    workers: int | None = None,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    min_chars: int = MIN_DOCUMENT_CHARS,
    max_documents: int | None = None,
    progress: bool = True,
) -> dict:
    """Tokenize `corpus_files` once into uint16 shards under `out_dir`; returns the meta dict.

    `tokenizer`: anything `kobert.tokenizer.get_tokenizer` accepts (None: the shipped default).
    Document order is preserved whatever the number of `workers`, so shards are reproducible.
    """
    tok = _shard_tokenizer(tokenizer)
    files = [Path(f) for f in corpus_files]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f}: corpus file not found")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / META_FILE).unlink(missing_ok=True)  # a half-written directory must not look finished
    workers = workers or min(os.cpu_count() or 1, 8)
    tokenizer_arg = str(tokenizer) if tokenizer is not None else None
    writer = _ShardWriter(out, shard_tokens)
    _encode_into(writer, _documents(files, min_chars, max_documents), workers, tokenizer_arg, splitter,
                 _progress(progress))
    writer.close()
    if not writer.shards:
        raise ValueError(f"no documents of at least {min_chars} characters in {[str(f) for f in files]}")
    meta = _shards_meta(writer, tok, tokenizer_arg, splitter, files, min_chars)
    tok.save_pretrained(str(out / "tokenizer"))  # pretraining exports exactly this tokenizer
    tmp = out / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, out / META_FILE)
    return meta


def _shard_tokenizer(tokenizer: str | Path | None):
    from kobert.tokenizer import get_tokenizer

    tok = get_tokenizer(tokenizer)
    if len(tok) > 65536:
        raise ValueError(f"tokenizer has {len(tok)} ids; uint16 shards hold ids < 65536")
    return tok


def _documents(files: list[Path], min_chars: int, max_documents: int | None) -> Iterator[str]:
    """The corpus' documents in file order, at most `max_documents`."""
    n = 0
    for f in files:
        for doc in iter_documents(f, min_chars):
            if max_documents is not None and n >= max_documents:
                return
            n += 1
            yield doc


def _encode_into(writer: _ShardWriter, documents: Iterator[str], workers: int, tokenizer_arg: str | None,
                 splitter: str, bar) -> None:
    """Tokenize `documents` in `workers` processes (in order) and write them into `writer`'s shards."""
    # Each worker runs its own tokenizer; Rust-side threads would only fight the processes.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if workers == 1:
        _init_worker(tokenizer_arg, splitter)
        results = map(_encode_documents, windows(documents, DOCS_PER_TASK))
        pool = None
    else:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(workers, _init_worker, (tokenizer_arg, splitter))
        results = pool.imap(_encode_documents, windows(documents, DOCS_PER_TASK), chunksize=4)
    try:
        for encoded in results:
            for ids, starts in encoded:
                writer.add(ids, starts)
            bar(writer, encoded)
    finally:
        if pool is not None:
            pool.terminate()


def _shards_meta(writer: _ShardWriter, tok, tokenizer_arg: str | None, splitter: str, files: list[Path],
                 min_chars: int) -> dict:
    return {
        "format": "kobert-shards-v1",
        "dtype": "uint16",
        "tokens": sum(s["tokens"] for s in writer.shards),
        "documents": sum(s["documents"] for s in writer.shards),
        "sentences": sum(s["sentences"] for s in writer.shards),
        "shards": writer.shards,
        "vocab_size": len(tok),
        "special_ids": {t: tok.convert_tokens_to_ids(t) for t in ("[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]")},
        "tokenizer": tokenizer_arg or "default",
        "tokenizer_sha256": tokenizer_sha256(tok),
        "sentence_splitter": splitter_kind(splitter),
        "corpus_files": [f.name for f in files],
        "min_chars": min_chars,
    }


def _progress(enabled: bool):
    if not enabled:
        return lambda writer, encoded: None
    state = {"docs": 0, "tokens": 0}
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    bar = tqdm(unit=" docs", smoothing=0.1) if tqdm else None

    def update(writer, encoded):
        state["docs"] += len(encoded)
        state["tokens"] += sum(len(ids) for ids, _ in encoded)
        if bar is not None:
            bar.update(len(encoded))
            bar.set_postfix(tokens=f"{state['tokens']:,}", refresh=False)
    return update


# --- reading shards -----------------------------------------------------------------


@dataclass
class TokenShards:
    """Memory-mapped shards: `streams[i]` is a uint16 array, `starts[i]` its sentence offsets."""

    directory: Path
    meta: dict
    streams: list[np.ndarray]
    starts: list[np.ndarray]

    @property
    def num_tokens(self) -> int:
        return int(sum(len(s) for s in self.streams))

    def special_id(self, token: str) -> int:
        return int(self.meta["special_ids"][token])


def load_shards(shard_dir: str | Path) -> TokenShards:
    directory = Path(shard_dir)
    meta_file = directory / META_FILE
    if not meta_file.is_file():
        raise FileNotFoundError(f"{meta_file}: no shard metadata (run `kobert shards` first, or it was interrupted)")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    streams, starts = [], []
    for shard in meta["shards"]:
        path = directory / shard["file"]
        stream = np.memmap(path, dtype="<u2", mode="r")
        if len(stream) != shard["tokens"]:
            raise ValueError(f"{path}: {len(stream)} tokens, meta.json says {shard['tokens']} (truncated?)")
        streams.append(stream)
        starts.append(np.load(directory / shard["file"].replace(".bin", ".starts.npy"), mmap_mode="r"))
    return TokenShards(directory, meta, streams, starts)
