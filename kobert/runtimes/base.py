"""The one runtime API, framework-free.

A `Runtime` wraps one artifact of an export directory. Subclasses (one module
per framework) implement only `_open` and `_forward`; everything else (input
checking, dtype casting, tokenisation, pooling) lives here, once.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def read_manifest(export_dir: str | Path) -> dict:
    path = Path(export_dir) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{export_dir}: no manifest.json (not a kobert export directory)")
    return json.loads(path.read_text(encoding="utf-8"))


def prepare_inputs(input_ids, attention_mask=None, token_type_ids=None, max_length: int = 512) -> dict[str, np.ndarray]:
    """Check and normalise model inputs to int64 arrays of shape (batch, length)."""
    arrays = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
    ids = np.asarray(input_ids)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"input_ids: expected shape (batch, length) with both > 0, got {np.shape(input_ids)}")
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
    return out


class Runtime:
    """One artifact, one API: `run`, `embed`, `logits`."""

    #: the runtime's name as `load(..., runtime=...)` spells it
    name = "base"
    #: the manifest artifact this runtime opens when none is named
    default_artifact = ""

    def __init__(self, export_dir: str | Path, artifact: str | None = None):
        self.export_dir = Path(export_dir)
        self.manifest = read_manifest(self.export_dir)
        self.artifact = artifact or self.default_artifact
        entry = self.manifest["artifacts"].get(self.artifact) if self.artifact != "reference" else self.manifest.get("reference")
        if entry is None:
            raise ValueError(f"{export_dir}: manifest has no {self.artifact!r} artifact")
        self.entry = entry
        self.output_names = list(entry["outputs"])
        self.max_length = int(self.manifest.get("config", {}).get("max_position_embeddings", 512))
        self._tokenizer = None
        self._open([self.export_dir / f for f in entry["files"]])

    # --- what a framework module implements ----------------------------------

    def _open(self, files: list[Path]) -> None:
        raise NotImplementedError

    def _forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """inputs: int64 arrays named as INPUT_NAMES. Returns float32 arrays by output name."""
        raise NotImplementedError

    # --- the shared API ------------------------------------------------------

    def run(self, input_ids, attention_mask=None, token_type_ids=None) -> dict[str, np.ndarray]:
        inputs = prepare_inputs(input_ids, attention_mask, token_type_ids, self.max_length)
        outputs = self._forward(inputs)
        return {name: np.asarray(outputs[name], dtype=np.float32) for name in self.output_names}

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            name = self.manifest.get("tokenizer")
            if not name:
                raise ValueError(f"{self.export_dir}: this export has no tokenizer (export with --tokenizer PATH)")
            from kobert.tokenizer import get_tokenizer

            self._tokenizer = get_tokenizer(self.export_dir / name)
        return self._tokenizer

    def encode(self, texts: list[str], pairs: list[str] | None = None) -> dict[str, np.ndarray]:
        if isinstance(texts, str):
            texts = [texts]
        # A tokenizer may know a shorter length than the positions (the length the model was trained at).
        max_length = min(self.max_length, self.tokenizer.model_max_length)
        encoded = self.tokenizer(list(texts), list(pairs) if pairs else None, padding=True,
                                 truncation=True, max_length=max_length, return_tensors="np")
        return {name: encoded[name] for name in INPUT_NAMES}

    def embed(self, texts: list[str], pooling: str = "cls") -> np.ndarray:
        inputs = self.encode(texts)
        hidden = self.run(**inputs)["last_hidden_state"]
        if pooling == "cls":
            return hidden[:, 0]
        if pooling == "mean":
            mask = inputs["attention_mask"][..., None].astype(np.float32)
            return (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)
        raise ValueError(f"pooling {pooling!r}: expected 'cls' or 'mean'")

    def logits(self, texts: list[str]) -> np.ndarray | dict[str, np.ndarray]:
        outputs = self.run(**self.encode(texts))
        if "logits" in outputs:
            return outputs["logits"]
        if "start_logits" in outputs:
            return {"start_logits": outputs["start_logits"], "end_logits": outputs["end_logits"]}
        raise ValueError(f"{self.export_dir}: this model has no task head, so no logits (use embed)")

    def close(self) -> None:
        """Release framework resources (the MXNet worker process, for one)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
