"""The normaliser against sentencepiece's own, exhaustively: every code point and every charsmap key.

For the shipped model and for KoBERT's (skipped without shared data): each Unicode
scalar value on its own and between two syllables ("가" + ch + "나"), and each key of
the model's precompiled charsmap, must normalise to exactly what
`sentencepiece.SentencePieceProcessor.normalize` gives.
"""

import pytest

from kobert.tokenizer import DEFAULT_TOKENIZER_DIR

CODE_POINTS = [chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]


class Models:
    """Our normaliser and sentencepiece's, for one model file."""

    def __init__(self, model_file):
        import sentencepiece as spm

        from kobert.tokenizer import build_backend_tokenizer, charsmap_entries, load_sentencepiece_proto

        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.tok = build_backend_tokenizer(model_file)
        normal = sorted(
            self.sp.id_to_piece(i)
            for i in range(self.sp.get_piece_size())
            if not (self.sp.is_unknown(i) or self.sp.is_control(i))
        )
        rank = {piece: i + 5 for i, piece in enumerate(normal)}  # KoBERT's id rule, as in test_tokenizer.py
        self.kobert_id = [rank.get(self.sp.id_to_piece(i), 0) for i in range(self.sp.get_piece_size())]
        self.keys = list(charsmap_entries(load_sentencepiece_proto(model_file).normalizer_spec.precompiled_charsmap))

    def ours(self, texts):
        """Our normaliser + Metaspace, written the way sentencepiece's normalize() writes it."""
        normalised = map(self.tok.normalizer.normalize_str, texts)
        return ["▁" + text.replace(" ", "▁") if text else "" for text in normalised]

    def mismatches(self, texts):
        want = self.sp.normalize(texts)
        return [(text, expected, got) for text, expected, got in zip(texts, want, self.ours(texts)) if expected != got]

    def mismatches_joined(self, words, per_text=1024):
        """`mismatches` for many short texts, normalised `per_text` at a time (NUL between them).

        Both normalisers see the same long texts; a text that differs is then checked word by word.
        """
        texts = ["\0".join(words[i : i + per_text]) for i in range(0, len(words), per_text)]
        wrong = [text for text, _, _ in self.mismatches(texts)]
        return [m for text in wrong for m in self.mismatches(text.split("\0"))] or [(t, "", "") for t in wrong]


@pytest.fixture(scope="module", params=["shipped", "kobert"])
def models(request):
    if request.param == "shipped":
        return Models(DEFAULT_TOKENIZER_DIR / "tokenizer.model")
    return Models(request.getfixturevalue("kobert_sp_model_file"))


def _report(mismatches):
    return [(text.encode("unicode_escape"), want, got) for text, want, got in mismatches[:10]]


def test_every_code_point(models):
    assert _report(models.mismatches(CODE_POINTS)) == []


def test_every_code_point_between_syllables(models):
    assert _report(models.mismatches_joined(["가" + ch + "나" for ch in CODE_POINTS])) == []


def test_every_charsmap_key(models):
    assert len(models.keys) > 200_000  # nmt_nfkc: single characters and multi-character compositions
    assert _report(models.mismatches(models.keys)) == []


def test_ids_of_every_code_point_between_syllables(models):
    """The whole tokenizer, not just the normaliser: sentencepiece's ids under KoBERT's id rule.

    Encoding 1.1 million texts one by one takes minutes, so "가" + ch + "나" go 512 to a
    text, separated by spaces (no piece spans a space).  Only tie reorderings may differ.
    """
    words = ["가" + ch + "나" for ch in CODE_POINTS]
    texts = [" ".join(words[i : i + 512]) for i in range(0, len(words), 512)]
    ours = [encoding.ids for encoding in models.tok.encode_batch_fast(texts, add_special_tokens=False)]
    want = [[models.kobert_id[i] for i in ids] for ids in models.sp.encode(texts)]
    wrong = [(t, w, o) for t, w, o in zip(texts, want, ours) if w != o and sorted(w) != sorted(o)]
    assert _report(wrong) == []


@pytest.mark.parametrize(
    "text",
    [
        "\ufdd0\ufdd1\ufdd2\ufdd3",  # the normaliser's own noncharacters, when the input has them
        "\ufdd3\u0301\x01\ufdd3\u0316\ufdd3\ufdd3 \x01\ufdd3\x02\u0301 a\x01\ufdd3\ufdd3b \ufdd3\ufdd3\x01\u0301",
        "\u0300\u0301\u0316 a\u0302\u0323 \u1ea1\u0302 a\u0316\u0301 e\x01\u0301 A\u0302\u0300",  # marks: seams
        "～\ufdd2\ufdd2～\ufdd2 가\ufdd0ᆨ ㄱㅏ\ufdd0ㄳ",
        "\ufffd\u0301 ▁\u0300 a\u0301",  # a charsmap key followed by a combining mark
        "가ㄳ ㄱㅏㄳ 가\u11a8 ᄀ\u1161\u11a8",
    ],
)
def test_blockers_and_tags_in_the_input(models, text):
    assert _report(models.mismatches([text])) == []


@pytest.mark.parametrize("directory", ["tokenizer", "model"])
def test_shipped_tokenizer_json_has_the_derived_normaliser(directory):
    """What `get_tokenizer()` and the shipped model load is what the checks above cover."""
    import json

    from kobert.tokenizer import build_backend_tokenizer

    built = json.loads(build_backend_tokenizer(DEFAULT_TOKENIZER_DIR / "tokenizer.model").to_str())
    shipped = json.loads((DEFAULT_TOKENIZER_DIR.parent / directory / "tokenizer.json").read_text(encoding="utf-8"))
    assert shipped["normalizer"] == built["normalizer"]
