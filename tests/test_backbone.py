"""The shipped backbone is worth shipping: fine-tuned on a few thousand NSMC reviews it beats a randomly
initialised model of the same shape, same recipe, same reviews, by a wide margin.

Also: it loads with plain transformers (`AutoModel`), by name (`--checkpoint backbone`), and carries
the state.json a later session continues from. Skipped on a clone without ../shared/data (NSMC) or
without a committed backbone.
"""

from __future__ import annotations

import json

import pytest

from kobert.checkpoint import shipped
from kobert.datasets import default_data_dir

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

BACKBONE = shipped("backbone")
NSMC = default_data_dir() / "nsmc"
needs_backbone = pytest.mark.skipif(not (BACKBONE / "config.json").is_file(), reason="no backbone committed")


@needs_backbone
def test_backbone_loads_plainly_and_says_where_it_stands():
    model = transformers.AutoModel.from_pretrained(BACKBONE)
    assert type(model).__name__ == "BertModel" and model.config.vocab_size == 8002
    state = json.loads((BACKBONE / "state.json").read_text(encoding="utf-8"))
    assert state["tokens"] > 0 and state["step"] > 0 and state["sessions"]
    assert {"objective", "seed", "batch_size", "seq_len"} <= state["recipe"].keys()
    from kobert.checkpoint import resolve

    assert resolve("backbone") == (BACKBONE, "backbone")


@needs_backbone
@pytest.mark.shared_data
@pytest.mark.skipif(not (NSMC / "ratings_train.txt").is_file(), reason="no NSMC in the shared data")
def test_backbone_beats_random_init_on_a_small_nsmc_slice(tmp_path):
    from kobert.tokenizer import get_tokenizer
    from kobert.training.finetune import finetune_nsmc

    # 2,000 reviews to train on and 1,000 to score, from train's own head (the test split stays untouched)
    data = tmp_path / "nsmc"
    data.mkdir()
    lines = (NSMC / "ratings_train.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    (data / "ratings_train.txt").write_text("".join(lines[:2001]), encoding="utf-8")
    (data / "ratings_test.txt").write_text(lines[0] + "".join(lines[2001:3001]), encoding="utf-8")

    # transformers' own initialisation of the same shape: what pretraining is measured against
    torch.manual_seed(0)
    random_init = tmp_path / "random"
    transformers.BertModel(transformers.BertConfig.from_pretrained(BACKBONE)).save_pretrained(random_init)
    get_tokenizer(BACKBONE).save_pretrained(str(random_init))
    recipe = dict(nsmc_dir=data, epochs=1, max_length=64, batch_size=32, lr=1e-4, progress=False)
    pretrained = finetune_nsmc(BACKBONE, tmp_path / "ft-backbone", **recipe)["accuracy"]
    scratch = finetune_nsmc(random_init, tmp_path / "ft-random", **recipe)["accuracy"]
    print(f"NSMC slice (2,000 train / 1,000 scored): backbone {pretrained:.4f}, random init {scratch:.4f}")
    assert pretrained >= scratch + 0.08, (pretrained, scratch)
