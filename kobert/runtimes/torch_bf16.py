"""Runtime of the "torch-bf16" artifact: transformers' BERT under bfloat16 autocast (CPU).

The bfloat16 matmul kernels are widened to float32 on load (lossless) and
autocast narrows them back for each matmul, so the model object is the same
transformers class the torch reference uses. One forward pass gives every
output: the head's linear layer is applied to what it reads (`HeadSpec.reads`)
and its last axis split into the head's outputs, in order; parity checks this
wiring against transformers' own head forward.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kobert.canonical import CanonicalWeights
from kobert.runtimes.base import Runtime
from kobert.runtimes.torch import build_reference_model, set_torch_threads


def _autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


class TorchBf16Runtime(Runtime):
    name = "torch-bf16"
    default_artifact = "torch-bf16"

    def _open(self, files: list[Path]) -> None:
        from safetensors.torch import load_file

        set_torch_threads(self.threads)
        state = {name: t.float().numpy() for name, t in load_file(str(files[0])).items()}
        weights = CanonicalWeights.from_hf_state_dict(self.config, state, source=str(files[0]))
        self.model = build_reference_model(weights)
        self._head_layer = None
        if self.config.head_outputs:
            self._head_layer = getattr(self.model, self.config.head_spec.layer)

    def _forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = {name: torch.from_numpy(a) for name, a in inputs.items()}
        encoder = getattr(self.model, "bert", self.model)
        with torch.inference_mode(), _autocast():
            encoded = encoder(**tensors)
            outputs = {"last_hidden_state": encoded.last_hidden_state}
            if encoded.pooler_output is not None:
                outputs["pooler_output"] = encoded.pooler_output
            if self._head_layer is not None:
                head = self.config.head_spec
                scores = self._head_layer(outputs[head.reads])
                parts = scores.split(1, dim=-1) if len(head.outputs) > 1 else (scores,)
                for name, part in zip(head.outputs, parts):
                    outputs[name] = part.squeeze(-1) if len(head.outputs) > 1 else part
        return {name: t.float().numpy() for name, t in outputs.items()}

    def raw_session(self):
        model = self.model

        def call(feed):
            with torch.inference_mode(), _autocast():
                return model(**feed)

        return call

    def raw_feed(self, inputs: dict[str, np.ndarray]) -> dict:
        return {name: torch.from_numpy(np.asarray(a, dtype=np.int64)) for name, a in inputs.items()}
