"""The torch-bf16 tier: bf16 matmul kernels on disk, one autocast forward, judged by the bf16 gate."""

import json

import numpy as np
import pytest

from kobert import runtimes
from kobert.checkpoint import init_checkpoint
from kobert.config import preset
from kobert.export import export

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("head,labels", [("sequence_classification", 2), ("question_answering", 2)])
def test_bf16_tier_passes_its_gate_and_follows_the_torch_reference(tmp_path, head, labels):
    checkpoint = init_checkpoint(preset("tiny").with_head(head, labels), tmp_path / "ck", seed=7)
    result = export(checkpoint, tmp_path / "export", targets=["torch-bf16"])
    report = json.loads((result.out / "parity.json").read_text())
    entry = report["artifacts"]["torch-bf16"]
    assert report["passed"] and entry["gate"]["tier"] == "bf16" and entry["gate"]["min_cosine"] == 0.9999
    assert entry["outputs"]["mean_embedding"]["min_cosine"] >= 0.9999

    from safetensors.torch import load_file

    stored = load_file(str(result.out / "torch-bf16" / "model.safetensors"))
    kernels = {name: t.dtype for name, t in stored.items() if t.ndim == 2 and "embeddings" not in name}
    assert kernels and set(kernels.values()) == {torch.bfloat16}, kernels
    assert stored["bert.embeddings.word_embeddings.weight"].dtype == torch.float32

    rng = np.random.default_rng(1)
    ids = rng.integers(5, 8002, size=(3, 21))
    mask = np.ones_like(ids)
    mask[1, 9:] = 0
    with runtimes.load(result.out, runtime="torch") as reference, \
            runtimes.load(result.out, runtime="torch-bf16") as bf16:
        want, got = reference.run(ids, mask), bf16.run(ids, mask)
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == np.float32 and got[name].shape == want[name].shape, name
        a, b = want[name].reshape(len(ids), -1), got[name].reshape(len(ids), -1)
        cosine = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
        assert cosine.min() > 0.999, (name, cosine)
        assert not np.array_equal(a, b), f"{name}: bit-identical to fp32, so not computed in bf16"
