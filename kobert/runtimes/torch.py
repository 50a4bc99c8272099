"""The PyTorch reference runtime: transformers' own BERT classes on the exported reference checkpoint.

Hidden states and pooled output come from the encoder (`model.bert`); logits
come from a separate call of the full transformers model, so the head wiring of
every other framework is checked against transformers' own forward code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kobert.checkpoint import load_reference_model
from kobert.runtimes.base import Runtime


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
        self.model = load_reference_model(files[0])

    def _forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return reference_outputs(self.model, inputs)
