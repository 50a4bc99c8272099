"""`TextEncoder` (Rust backend straight into numpy) against transformers' own tokenizer call."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import generate_korean_documents  # noqa: E402

from kobert.encoding import TextEncoder

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "kobert" / "assets" / "model"


@pytest.fixture(scope="module")
def tokenizers():
    if not (SHIPPED_MODEL / "tokenizer.json").is_file():
        pytest.skip(f"{SHIPPED_MODEL}: no shipped tokenizer in this checkout")
    from transformers import AutoTokenizer

    return TextEncoder(SHIPPED_MODEL, max_length=512, vocab_size=8002), AutoTokenizer.from_pretrained(SHIPPED_MODEL)


def _texts():
    long_review = "이 영화 정말 재밌어요 ㅋㅋㅋ " * 40  # past the tokenizer's 64 tokens: truncated
    return generate_korean_documents(200, seed=3) + ["", "a", long_review, "😀 漢字 ....!!"]


def test_encode_equals_transformers_with_padding_and_truncation(tokenizers):
    ours, reference = tokenizers
    texts = _texts()
    got = ours.encode(texts)
    want = reference(texts, padding=True, truncation=True, max_length=ours.max_length, return_tensors="np")
    assert got["input_ids"].shape[1] == ours.max_length  # the long review was cut, and padding reaches it
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        assert got[name].dtype == np.int64
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_pairs_give_token_types_of_segment_b(tokenizers):
    ours, reference = tokenizers
    texts, pairs = _texts()[:50], _texts()[50:100]
    got = ours.encode(texts, pairs)
    want = reference(texts, pairs, padding=True, truncation=True, max_length=ours.max_length, return_tensors="np")
    assert got["token_type_ids"].max() == 1
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
