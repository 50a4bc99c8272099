"""ONNX from the canonical PyTorch model, via torch.onnx (the dynamo exporter).

The legacy TorchScript exporter (`dynamo=False`) traces transformers' mask
construction at the example shape and gives wrong results at other lengths
(measured: max-abs 2.3 on hidden states), so only the dynamo path is used.
Eager attention keeps plain MatMul/Softmax nodes that ONNX Runtime can fuse.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from kobert.canonical import CanonicalWeights
from kobert.checkpoint import build_reference_model
from kobert.exporters import ExportedArtifact
from kobert.runtimes.base import INPUT_NAMES

OPSET = 18


class NamedOutputs(torch.nn.Module):
    """Returns every output of a transformers BERT in kobert's output order."""

    def __init__(self, model, head: str):
        super().__init__()
        self.model = model
        self.head = head
        self.encoder = model if head == "none" else model.bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        encoded = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        hidden, pooled = encoded.last_hidden_state, encoded.pooler_output
        if self.head == "none":
            return hidden, pooled
        if self.head == "sequence_classification":
            return hidden, pooled, self.model.classifier(pooled)
        if self.head == "token_classification":
            return hidden, self.model.classifier(hidden)
        start, end = self.model.qa_outputs(hidden).split(1, dim=-1)
        return hidden, start.squeeze(-1), end.squeeze(-1)


def export(weights: CanonicalWeights, export_dir: Path) -> ExportedArtifact:
    config = weights.config
    module = NamedOutputs(build_reference_model(weights), config.head).eval()
    # Example inputs of batch 2, length 8 with padding; the axes are exported as dynamic.
    ids = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=config.max_position_embeddings)
    dynamic = tuple({0: batch, 1: sequence} for _ in INPUT_NAMES)
    target = Path(export_dir) / "onnx"
    target.mkdir(parents=True, exist_ok=True)
    # The dynamo exporter logs missing torchvision ops and shape-naming notes that concern no BERT.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (ids, mask, torch.zeros_like(ids)), str(target / "model.onnx"),
                          dynamo=True, dynamic_shapes=dynamic, input_names=list(INPUT_NAMES),
                          output_names=list(config.output_names), opset_version=OPSET,
                          external_data=False, verbose=False)
    return ExportedArtifact(
        name="onnx",
        files=["onnx/model.onnx"],
        inputs=[{"name": name, "dtype": "int64"} for name in INPUT_NAMES],
        outputs=list(config.output_names),
        framework=f"torch {torch.__version__.split('+')[0]}",
        extra={"opset": OPSET},
    )
