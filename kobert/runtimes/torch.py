"""The PyTorch spoke: transformers' own BERT classes, the reference every artifact is judged against.

Everything kobert does with torch's models is here: building a transformers
model from canonical weights, computing the reference outputs, and the torch
runtime that serves the export's `reference/` checkpoint. Checkpoints are read
through the hub (`kobert.checkpoint`), which also reads `.bin` / legacy state
dicts without unpickling code.

Hidden states and pooled output come from the encoder (`model.bert`); logits
come from a separate call of the full transformers model, so the head wiring of
every other framework is checked against transformers' own forward code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kobert.canonical import CanonicalWeights, CheckpointError
from kobert.checkpoint import load_checkpoint
from kobert.runtimes.base import Runtime


def set_torch_threads(threads: int | None) -> None:
    """torch's intra-op threads, process-wide (torch has no per-model setting); None leaves its default."""
    if threads is not None:
        torch.set_num_threads(threads)


def build_reference_model(weights: CanonicalWeights):
    """A transformers model (eager attention, eval mode) holding exactly these weights."""
    import transformers

    config = weights.config
    model_class = getattr(transformers, config.head_spec.architecture)
    hf_config = transformers.BertConfig(**config.to_hf_dict())
    model = model_class._from_config(hf_config, attn_implementation="eager")
    state = weights.to_hf_state_dict()
    if config.head == "none":  # BertModel's own names have no "bert." prefix
        state = {k.removeprefix("bert."): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise CheckpointError(f"reference model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.eval()


def load_reference_model(src: str | Path):
    """`kobert.get_kobert_model`: a transformers model for a checkpoint dir, hub id or legacy file."""
    return build_reference_model(load_checkpoint(src).weights)


def load_source_model(folder: Path, architecture: str):
    """A Hugging Face checkpoint folder opened by transformers itself (eager attention, eval mode, float32):
    the judge's reference for an export of it, independent of kobert's reading of the same files. Also
    the tensors transformers had to make up (missing from the folder): such a model is no reference."""
    import transformers
    from transformers.utils import logging as hf_logging

    # transformers' "Loading weights" bar would break kobert's one-line-per-event stderr (and --quiet).
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model, info = getattr(transformers, architecture).from_pretrained(
            str(folder), attn_implementation="eager", dtype=torch.float32, output_loading_info=True)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    made_up = [k for k in info.get("missing_keys", ()) if not k.endswith(("position_ids", "token_type_ids"))]
    return model.eval(), made_up


def weight_differences(model, other) -> list[str]:
    """The tensors in which two transformers models differ (names, shapes or any bit); empty when equal."""
    mine, theirs = model.state_dict(), other.state_dict()
    differ = sorted(set(mine) ^ set(theirs))
    differ += [name for name in sorted(set(mine) & set(theirs))
               if mine[name].shape != theirs[name].shape or not torch.equal(mine[name], theirs[name])]
    return differ


class SourceRuntime:
    """A transformers model with the runtime's `run(ids, mask, types)`: the source checkpoint as judge."""

    name = "transformers"

    def __init__(self, model):
        self.model = model

    def run(self, input_ids, attention_mask, token_type_ids) -> dict[str, np.ndarray]:
        return reference_outputs(self.model, {"input_ids": input_ids, "attention_mask": attention_mask,
                                              "token_type_ids": token_type_ids})


def reference_outputs(model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All kobert outputs of a transformers BertModel / BertFor... model, as float32 numpy."""
    tensors = {name: torch.from_numpy(np.asarray(a, dtype=np.int64)) for name, a in inputs.items()}
    encoder = getattr(model, "bert", model)
    with torch.no_grad():
        encoded = encoder(**tensors)
        outputs = {"last_hidden_state": encoded.last_hidden_state}
        if encoded.pooler_output is not None:
            outputs["pooler_output"] = encoded.pooler_output
        if encoder is not model:
            full = model(**tensors)
            for name in ("logits", "start_logits", "end_logits"):
                if getattr(full, name, None) is not None:
                    outputs[name] = getattr(full, name)
    return {name: t.float().numpy() for name, t in outputs.items()}


class TorchRuntime(Runtime):
    name = "torch"
    default_artifact = "reference"

    def _open(self, files: list[Path]) -> None:
        set_torch_threads(self.threads)
        self.model = build_reference_model(load_checkpoint(files[0]).weights)

    def _forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return reference_outputs(self.model, inputs)

    def raw_session(self):
        model = self.model

        def call(feed):
            with torch.inference_mode():
                return model(**feed)

        return call

    def raw_feed(self, inputs: dict[str, np.ndarray]) -> dict:
        return {name: torch.from_numpy(np.asarray(a, dtype=np.int64)) for name, a in inputs.items()}


def gemm_session(x: np.ndarray, w: np.ndarray):
    """torch's own float32 `x @ w` as `call() -> tensor`: the benchmark's GEMM-ceiling row."""
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)

    def call():
        with torch.inference_mode():
            return tx @ tw

    return call


class InMemoryRuntime(Runtime):
    """A transformers model being trained, with the runtime API: fine-tuning scores its model with the
    same task code `kobert eval` runs on an export (no export folder, so nothing to verify)."""

    name = "torch"

    def __init__(self, model, config, tokenizer_dir: Path, max_length: int):
        import threading

        from kobert.encoding import TextEncoder

        self.export_dir = Path(tokenizer_dir)
        self.manifest, self.artifact, self.entry, self.verify = {}, "in-memory", {}, False
        self.config = config
        self.output_names = list(config.output_names)
        self.max_length = config.max_position_embeddings
        self._encoder = TextEncoder(tokenizer_dir, min(max_length, self.max_length), config.vocab_size)
        self._tokenizer = None
        self._tokenizer_lock = threading.Lock()
        self.model = model

    def _forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One forward of the whole model (in eval mode, on its device); the hidden states and pooled
        output are read from it rather than from a second encoder call."""
        model = self.model
        device = next(model.parameters()).device
        tensors = {name: torch.from_numpy(np.asarray(a, dtype=np.int64)).to(device) for name, a in inputs.items()}
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                full = model(**tensors, output_hidden_states=True)
                outputs = {"last_hidden_state": full.hidden_states[-1]}
                if self.config.has_pooler:
                    outputs["pooler_output"] = model.bert.pooler(full.hidden_states[-1])
                for name in self.config.head_outputs:
                    outputs[name] = getattr(full, name)
        finally:
            model.train(training)
        return {name: t.float().cpu().numpy() for name, t in outputs.items()}
