"""Regenerate kobert/assets/golden_inputs.json (deterministic; the stored file is the source of truth).

    python parity_tests/make_golden.py
"""

import json
from pathlib import Path

import numpy as np

CLS, SEP, PAD, UNK, MASK = 2, 3, 1, 0, 4
VOCAB = 8002
TEXTS = [
    "한국어 모델을 공유합니다.",
    "이 영화 정말 재밌어요 ㅋㅋㅋ 강추!!",
    "스토리가 너무 지루하고 연기도 별로였다....",
    "KoBERT는 SKT에서 공개한 한국어 BERT 모델입니다.",
    "서울特別市 날씨가 좋네요 😊",
    "배우들의 연기가 훌륭했지만 결말이 아쉬웠습니다.",
]


def sentence(rng, length, unk_every=0):
    body = rng.integers(5, VOCAB, size=max(length - 2, 0))
    if unk_every:
        body[::unk_every] = UNK
    return [CLS, *body.tolist(), SEP][:length] if length >= 2 else [CLS]


def pair(rng, len_a, len_b):
    a = [CLS, *rng.integers(5, VOCAB, size=len_a).tolist(), SEP]
    b = [*rng.integers(5, VOCAB, size=len_b).tolist(), SEP]
    return a + b, [0] * len(a) + [1] * len(b)


def batch(name, rows, types=None):
    width = max(len(r) for r in rows)
    types = types or [[0] * len(r) for r in rows]
    return {
        "name": name,
        "input_ids": [r + [PAD] * (width - len(r)) for r in rows],
        "attention_mask": [[1] * len(r) + [0] * (width - len(r)) for r in rows],
        "token_type_ids": [t + [0] * (width - len(t)) for t in types],
    }


def main():
    rng = np.random.default_rng(20261124)
    pairs = [pair(rng, a, b) for a, b in ((6, 4), (10, 9), (3, 1))]
    cases = [
        batch("single_row", [sentence(rng, 9)]),
        batch("length_1", [[CLS]]),
        batch("length_2", [[CLS, SEP]]),
        batch("mixed_lengths_padded", [sentence(rng, n) for n in (24, 7, 13)]),
        batch("batch_8_mixed", [sentence(rng, n) for n in (5, 64, 17, 33, 2, 48, 9, 30)]),
        batch("pairs_segment_b", [p for p, _ in pairs], [t for _, t in pairs]),
        batch("unk_mask_and_pad_ids", [sentence(rng, 20, unk_every=3), [CLS, MASK, UNK, PAD, SEP]]),
        batch("length_512", [sentence(rng, 512)]),
    ]
    out = Path(__file__).resolve().parents[1] / "kobert" / "assets" / "golden_inputs.json"
    out.write_text(json.dumps({"cases": cases, "texts": TEXTS}, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {out}: {len(cases)} cases, {len(TEXTS)} texts")


if __name__ == "__main__":
    main()
