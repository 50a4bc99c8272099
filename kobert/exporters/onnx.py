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
from kobert.config import INPUTS, INPUT_NAMES, KoBertConfig
from kobert.exporters import ExportedArtifact
from kobert.runtimes.torch import build_reference_model

OPSET = 18


class NamedOutputs(torch.nn.Module):
    """Returns every output of a transformers BERT in kobert's output order (the model contract).

    The head is transformers' own layer (`HeadSpec.layer`: `classifier` or `qa_outputs`) applied to
    what the contract says it reads; several outputs split its last axis, in order.
    """

    def __init__(self, model, config: KoBertConfig):
        super().__init__()
        self.model = model
        self.config = config
        self.encoder = model if config.head == "none" else model.bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        encoded = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        features = {"last_hidden_state": encoded.last_hidden_state, "pooler_output": encoded.pooler_output}
        spec = self.config.head_spec
        if spec.reads is not None:
            head_layer = getattr(self.model, spec.layer)
            scores = head_layer(features[spec.reads])
            parts = [scores] if len(spec.outputs) == 1 else [p.squeeze(-1) for p in scores.split(1, dim=-1)]
            features.update(zip(spec.outputs, parts))
        return tuple(features[name] for name in self.config.output_names)


def export(weights: CanonicalWeights, export_dir: Path) -> ExportedArtifact:
    config = weights.config
    module = NamedOutputs(build_reference_model(weights), config).eval()
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
        inputs=[{"name": name, "dtype": dtype} for name, dtype in INPUTS],
        outputs=list(config.output_names),
        framework=f"torch {torch.__version__.split('+')[0]}",
        extra={"opset": OPSET},
    )
