"""The independent reference every parity test compares against: transformers itself.

Nothing here imports kobert. `outputs(model, inputs)` runs a transformers BERT
(BertModel or BertFor...) and names its outputs as kobert's model contract does;
`load(checkpoint)` opens a checkpoint folder with transformers' Auto classes.
Importable from tests/ and parity_tests/ (pytest's `pythonpath` includes tests/),
and as the `transformers_reference` fixture (conftest.py at the repo root).
"""

from __future__ import annotations

import numpy as np
import torch
import transformers

AUTO_CLASSES = {
    "BertModel": transformers.AutoModel,
    "BertForSequenceClassification": transformers.AutoModelForSequenceClassification,
    "BertForTokenClassification": transformers.AutoModelForTokenClassification,
    "BertForQuestionAnswering": transformers.AutoModelForQuestionAnswering,
}
HEAD_OUTPUTS = ("logits", "start_logits", "end_logits")


def load(checkpoint) -> torch.nn.Module:
    """A checkpoint folder through transformers' Auto class for its architecture (eager attention, eval)."""
    architecture = transformers.AutoConfig.from_pretrained(checkpoint).architectures[0]
    return AUTO_CLASSES[architecture].from_pretrained(checkpoint, attn_implementation="eager").eval()


@torch.no_grad()
def outputs(model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """last_hidden_state, pooler_output (where the model has a pooler) and the head's outputs, as numpy."""
    feeds = {name: torch.from_numpy(np.asarray(array, dtype=np.int64)) for name, array in inputs.items()}
    encoder = getattr(model, "bert", model)
    encoded = encoder(**feeds)
    result = {"last_hidden_state": encoded.last_hidden_state.numpy()}
    if encoded.pooler_output is not None:
        result["pooler_output"] = encoded.pooler_output.numpy()
    if encoder is not model:
        full = model(**feeds)
        result.update({name: getattr(full, name).numpy() for name in HEAD_OUTPUTS if getattr(full, name, None) is not None})
    return result


def checkpoint_outputs(checkpoint, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return outputs(load(checkpoint), inputs)
