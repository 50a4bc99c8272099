"""The "torch-bf16" tier: the transformers model run under torch's bfloat16 autocast on CPU.

Autocast rounds every matmul operand to bfloat16 (oneDNN then uses AVX512_BF16
or AMX tiles where the CPU has them) and keeps LayerNorm, softmax and the
embeddings in float32. So the artifact stores each matmul kernel (the tensors
the canonical table transposes: Q, K, V, attention output, FFN, pooler, head)
as bfloat16, which is exactly what autocast would round them to, and everything
else as float32: the same outputs as autocast on the fp32 checkpoint, at about
half its size. Judged by GATES["bf16"] (cosine on the sentence embeddings).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kobert.canonical import CanonicalWeights, weight_table
from kobert.config import INPUTS
from kobert.exporters import ExportedArtifact

NAME = "torch-bf16"
WEIGHTS_FILE = "model.safetensors"


def export(weights: CanonicalWeights, export_dir: Path) -> ExportedArtifact:
    import torch
    from safetensors.torch import save_file

    out = Path(export_dir) / NAME
    out.mkdir(parents=True, exist_ok=True)
    state = {}
    for canonical, hf, _, transpose in weight_table(weights.config):
        array = weights.tensors[canonical]
        tensor = torch.from_numpy(np.ascontiguousarray(array.T if transpose else array, dtype=np.float32))
        state[hf] = tensor.to(torch.bfloat16) if transpose else tensor
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    return ExportedArtifact(
        name=NAME,
        files=[f"{NAME}/{WEIGHTS_FILE}"],
        inputs=[{"name": name, "dtype": dtype} for name, dtype in INPUTS],
        outputs=list(weights.config.output_names),
        framework=f"torch {torch.__version__.split('+')[0]}",
        extra={"tier": "bf16", "compute": "torch.autocast('cpu', dtype=torch.bfloat16)",
               "bfloat16_tensors": "matmul kernels; embeddings, biases and LayerNorm float32"},
    )
