"""The canonical weight set: the hub every exporter reads.

One naming table, written once as data. Each row gives a tensor's canonical
name, its Hugging Face `BertModel` name, its shape (in config terms) and its
meaning. Linear layers are stored as matmul-ready kernels, shape (in, out), so
`y = x @ kernel + bias` in every framework; Hugging Face stores (out, in), so
those rows are transposed on the way in and out.

`{i}` stands for the encoder layer index. Head rows exist only when the
checkpoint has that head.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kobert.config import HEAD_SPECS, KoBertConfig

# canonical name, Hugging Face name (without the "bert." prefix), shape, transpose?, meaning
ENCODER_TABLE: tuple[tuple[str, str, tuple[str, ...], bool, str], ...] = (
    ("embeddings.word", "embeddings.word_embeddings.weight", ("vocab", "hidden"), False, "token embedding"),
    ("embeddings.position", "embeddings.position_embeddings.weight", ("positions", "hidden"), False, "absolute position embedding"),
    ("embeddings.token_type", "embeddings.token_type_embeddings.weight", ("types", "hidden"), False, "segment A/B embedding"),
    ("embeddings.norm.gamma", "embeddings.LayerNorm.weight", ("hidden",), False, "embedding LayerNorm scale"),
    ("embeddings.norm.beta", "embeddings.LayerNorm.bias", ("hidden",), False, "embedding LayerNorm shift"),
    ("layer.{i}.attention.query.kernel", "encoder.layer.{i}.attention.self.query.weight", ("hidden", "hidden"), True, "query projection"),
    ("layer.{i}.attention.query.bias", "encoder.layer.{i}.attention.self.query.bias", ("hidden",), False, ""),
    ("layer.{i}.attention.key.kernel", "encoder.layer.{i}.attention.self.key.weight", ("hidden", "hidden"), True, "key projection"),
    ("layer.{i}.attention.key.bias", "encoder.layer.{i}.attention.self.key.bias", ("hidden",), False, ""),
    ("layer.{i}.attention.value.kernel", "encoder.layer.{i}.attention.self.value.weight", ("hidden", "hidden"), True, "value projection"),
    ("layer.{i}.attention.value.bias", "encoder.layer.{i}.attention.self.value.bias", ("hidden",), False, ""),
    ("layer.{i}.attention.output.kernel", "encoder.layer.{i}.attention.output.dense.weight", ("hidden", "hidden"), True, "attention output projection"),
    ("layer.{i}.attention.output.bias", "encoder.layer.{i}.attention.output.dense.bias", ("hidden",), False, ""),
    ("layer.{i}.attention.norm.gamma", "encoder.layer.{i}.attention.output.LayerNorm.weight", ("hidden",), False, "post-attention LayerNorm scale"),
    ("layer.{i}.attention.norm.beta", "encoder.layer.{i}.attention.output.LayerNorm.bias", ("hidden",), False, "post-attention LayerNorm shift"),
    ("layer.{i}.ffn.up.kernel", "encoder.layer.{i}.intermediate.dense.weight", ("hidden", "ffn"), True, "FFN expansion (then exact erf GELU)"),
    ("layer.{i}.ffn.up.bias", "encoder.layer.{i}.intermediate.dense.bias", ("ffn",), False, ""),
    ("layer.{i}.ffn.down.kernel", "encoder.layer.{i}.output.dense.weight", ("ffn", "hidden"), True, "FFN contraction"),
    ("layer.{i}.ffn.down.bias", "encoder.layer.{i}.output.dense.bias", ("hidden",), False, ""),
    ("layer.{i}.ffn.norm.gamma", "encoder.layer.{i}.output.LayerNorm.weight", ("hidden",), False, "post-FFN LayerNorm scale"),
    ("layer.{i}.ffn.norm.beta", "encoder.layer.{i}.output.LayerNorm.bias", ("hidden",), False, "post-FFN LayerNorm shift"),
    ("pooler.kernel", "pooler.dense.weight", ("hidden", "hidden"), True, "[CLS] pooler (then tanh)"),
    ("pooler.bias", "pooler.dense.bias", ("hidden",), False, ""),
)

# The pooler rows exist only for heads that use a pooler (`KoBertConfig.has_pooler`):
# transformers builds token-classification and QA models without one.
# Head rows use full Hugging Face names (heads sit beside "bert.", not inside it).
# sequence_classification reads pooler_output; token_classification and
# question_answering read last_hidden_state. QA's 2 labels are (start, end).
# What each head's one dense layer does; its Hugging Face name is the model contract's `HeadSpec.layer`.
HEAD_ROLES = {
    "sequence_classification": "classifier on pooler_output",
    "token_classification": "per-token classifier on last_hidden_state",
    "question_answering": "span start/end scorer on last_hidden_state",
}
HEAD_TABLE: dict[str, tuple[tuple[str, str, tuple[str, ...], bool, str], ...]] = {
    head: () if spec.layer is None else (
        ("head.kernel", f"{spec.layer}.weight", ("hidden", "labels"), True, HEAD_ROLES[head]),
        ("head.bias", f"{spec.layer}.bias", ("labels",), False, ""),
    )
    for head, spec in HEAD_SPECS.items()
}


class CheckpointError(ValueError):
    """A checkpoint is malformed: the message names the file or tensor and what was expected."""


def _dims(config: KoBertConfig) -> dict[str, int]:
    return {
        "vocab": config.vocab_size,
        "hidden": config.hidden_size,
        "positions": config.max_position_embeddings,
        "types": config.type_vocab_size,
        "ffn": config.intermediate_size,
        "labels": config.num_labels,
    }


def weight_table(config: KoBertConfig) -> list[tuple[str, str, tuple[int, ...], bool]]:
    """Every tensor of this config: (canonical name, HF name, shape, transpose?)."""
    dims = _dims(config)
    rows = []
    for canonical, hf, shape, transpose, _ in ENCODER_TABLE:
        if canonical.startswith("pooler.") and not config.has_pooler:
            continue
        concrete = tuple(dims[d] for d in shape)
        if "{i}" in canonical:
            for i in range(config.num_hidden_layers):
                rows.append((canonical.format(i=i), "bert." + hf.format(i=i), concrete, transpose))
        else:
            rows.append((canonical, "bert." + hf, concrete, transpose))
    for canonical, hf, shape, transpose, _ in HEAD_TABLE[config.head]:
        rows.append((canonical, hf, tuple(dims[d] for d in shape), transpose))
    return rows


@dataclass
class CanonicalWeights:
    """Plain float32 numpy arrays under canonical names, plus the config that shapes them."""

    config: KoBertConfig
    tensors: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.tensors[name]

    def layer(self, i: int, name: str) -> np.ndarray:
        return self.tensors[f"layer.{i}.{name}"]

    @property
    def num_parameters(self) -> int:
        return sum(int(t.size) for t in self.tensors.values())

    # --- conversion ----------------------------------------------------------

    @classmethod
    def from_hf_state_dict(cls, config: KoBertConfig, state: dict[str, np.ndarray], source: str = "checkpoint") -> "CanonicalWeights":
        """Validate a Hugging Face-named state dict (numpy) and convert it.

        Checks missing and unexpected keys, every shape against the config,
        dtype (floating point) and finiteness. Keys a task head does not use
        (e.g. the MLM head of a pretraining checkpoint) are reported as unexpected
        only if they are not a known pretraining head.
        """
        table = weight_table(config)
        expected = {hf for _, hf, _, _ in table}
        missing = sorted(expected - state.keys())
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise CheckpointError(f"{source}: missing tensors: {shown}")
        # Buffers and the pretraining (MLM/NSP) heads carry nothing an encoder export needs.
        ignorable = ("cls.", "bert.embeddings.position_ids", "bert.embeddings.token_type_ids")
        if not config.has_pooler:  # a pooler left over from pretraining is unused by these heads
            ignorable += ("bert.pooler.",)
        unexpected = sorted(k for k in state.keys() - expected if not k.startswith(ignorable))
        if unexpected:
            shown = ", ".join(unexpected[:5]) + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else "")
            raise CheckpointError(f"{source}: unexpected tensors (wrong head or not a BERT checkpoint?): {shown}")
        tensors = {}
        for canonical, hf, shape, transpose in table:
            array = np.asarray(state[hf])
            hf_shape = shape[::-1] if transpose else shape
            if array.shape != hf_shape:
                raise CheckpointError(f"{source}: {hf}: shape {array.shape}, config expects {hf_shape}")
            if not np.issubdtype(array.dtype, np.floating):
                raise CheckpointError(f"{source}: {hf}: dtype {array.dtype}, expected a floating-point tensor")
            if not np.all(np.isfinite(array)):
                raise CheckpointError(f"{source}: {hf}: contains NaN or Inf")
            array = array.astype(np.float32)
            tensors[canonical] = np.ascontiguousarray(array.T if transpose else array)
        return cls(config, tensors)

    def to_hf_state_dict(self) -> dict[str, np.ndarray]:
        state = {}
        for canonical, hf, _, transpose in weight_table(self.config):
            array = self.tensors[canonical]
            state[hf] = np.ascontiguousarray(array.T if transpose else array)
        return state

    # --- storage: one .npz (no pickle) + the HF config.json -------------------

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "canonical.npz", **self.tensors)
        (directory / "config.json").write_text(self.config.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path) -> "CanonicalWeights":
        directory = Path(directory)
        config = KoBertConfig.from_file(directory / "config.json")
        with np.load(directory / "canonical.npz", allow_pickle=False) as npz:
            tensors = {name: npz[name] for name in npz.files}
        return cls(config, tensors)

    def fingerprint(self) -> str:
        """sha256 over names and bytes: identical weights give identical fingerprints."""
        h = hashlib.sha256(json.dumps(self.config.to_hf_dict(), sort_keys=True).encode())
        for name in sorted(self.tensors):
            h.update(name.encode())
            h.update(np.ascontiguousarray(self.tensors[name]).tobytes())
        return h.hexdigest()
