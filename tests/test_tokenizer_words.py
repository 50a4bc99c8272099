"""Words in the tokenizer: Metaspace `split=True`, so `word_ids()` are the text's whitespace words.

transformers' question-answering pipeline widens an answer to whole words with `word_ids()`;
with `split=False` every token of a text was word 0. The ids are the same either way
(benchmarks/tokenizer_split_check.py counts 0 differences on all NSMC, KLUE, KorNLU and KorQuAD
texts for both models); here: the words equal `text.split()`, the ids equal sentencepiece's
with the setting on (tests/test_tokenizer.py checks whole corpora), the shipped tokenizer.json
files carry it, and an older tokenizer.json (split=False) gains words on load with the same ids.
"""

from __future__ import annotations

import csv
import json
import re

import pytest

from conftest import generate_korean_documents, shared_data_dir
from kobert.checkpoint import shipped
from kobert.tokenizer import build_backend_tokenizer, get_tokenizer, split_words

GOLDEN = json.loads((shipped("tokenizer").parent / "golden_inputs.json").read_text(encoding="utf-8"))["texts"]
SPACED = [
    "세종대왕은 조선의 제4대 왕이다.",
    "  앞뒤에   공백이\t있는\n문장  ",  # runs of spaces, a tab and a newline are one word break each
    "홍길동이 서울에서 삼성전자 본사를 방문했다.",
    "䷀ 괜찮아 ꙮ 쀍쀎 뷁",  # [UNK] pieces are words too
    "KoBERT는 SKTBrain이 공개한 BERT 모델입니다 (Apache-2.0).",
    "ㅋ",
    "",
    "   ",
]


def word_starts(word_ids: list, offsets: list, text: str) -> list[int]:
    """Where each word starts in `text` (a "▁" piece's offsets cover the space before it).

    Starts rather than whole spans: a composed jamo's offsets cover only part of what it came
    from (ㄷ+ㅠ -> 듀), which says nothing about words.
    """
    found: dict[int, list[int]] = {}
    for word, (start, end) in zip(word_ids, offsets):
        if word is not None:
            span = found.setdefault(word, [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
    assert sorted(found) == list(range(len(found))), "word ids are not 0..n-1 in order"
    spans = [found[w] for w in sorted(found)]
    return [start + len(text[start:end]) - len(text[start:end].lstrip()) for start, end in spans]


def split_starts(text: str) -> list[int]:
    """Where each word of `text.split()` starts."""
    starts = [m.start() for m in re.finditer(r"\S+", text)]
    assert len(starts) == len(text.split())
    return starts


def nsmc_slice(n: int) -> list[str]:
    path = shared_data_dir() / "nsmc" / "ratings_test.txt"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle, delimiter="\t")
        next(rows)
        return [row[1] for _, row in zip(range(n), rows)]


@pytest.fixture(scope="module", params=["shipped", "kobert"])
def model_file(request):
    if request.param == "kobert":
        return request.getfixturevalue("kobert_sp_model_file")
    return shipped("tokenizer") / "tokenizer.model"


def test_word_ids_follow_whitespace_words(model_file):
    tokenizer = get_tokenizer(model_file)
    texts = GOLDEN + SPACED + generate_korean_documents(300, seed=5) + nsmc_slice(2000)
    encodings = tokenizer(texts, return_offsets_mapping=True)
    for number, text in enumerate(texts):
        got = word_starts(encodings.word_ids(number), encodings["offset_mapping"][number], text)
        assert got == split_starts(text), f"text {number}: {text!r}"


def test_one_word_per_space_separated_word_even_inside_a_pair(model_file):
    tokenizer = get_tokenizer(model_file)
    encoding = tokenizer("세종대왕은 누구인가", "세종대왕은 조선의 제4대 왕이다.", return_offsets_mapping=True)
    context = [w for w, s in zip(encoding.word_ids(), encoding.sequence_ids()) if s == 1]
    assert sorted(set(context)) == [0, 1, 2, 3]
    assert encoding.word_to_chars(0, sequence_index=1) == (0, 5)  # "세종대왕은", the particle included


def test_ids_with_words_equal_sentencepiece(model_file):
    """The setting changes no id: sentencepiece (KoBERT's id rule) on golden and generated texts."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    normal = sorted(sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not (sp.is_unknown(i) or sp.is_control(i)))
    piece_to_id = {p: i + 5 for i, p in enumerate(normal)}
    tokenizer = get_tokenizer(model_file)
    assert tokenizer.backend_tokenizer.pre_tokenizer.split is True
    for text in GOLDEN + SPACED + generate_korean_documents(300, seed=6):
        want = [0 if sp.is_unknown(i) else piece_to_id[sp.id_to_piece(i)] for i in sp.encode(text)]
        got = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert got == want or sorted(got) == sorted(want), text  # tie permutations: see test_tokenizer.py


@pytest.mark.parametrize("asset", ["tokenizer", "model"])
def test_shipped_tokenizer_json_has_words(asset):
    """The shipped files are what the code builds (bar the model's training length)."""
    shipped_json = json.loads((shipped(asset) / "tokenizer.json").read_text(encoding="utf-8"))
    built = json.loads(build_backend_tokenizer(shipped(asset) / "tokenizer.model").to_str())
    for part in ("normalizer", "pre_tokenizer", "post_processor", "decoder"):
        assert shipped_json[part] == built[part], f"kobert/assets/{asset}/tokenizer.json: {part} differs from the build"
    # Scores may differ in the last printed digit (float formatting), pieces not at all.
    pieces = [(piece, pytest.approx(score, abs=1e-12)) for piece, score in built["model"]["vocab"]]
    assert [tuple(row) for row in shipped_json["model"]["vocab"]] == pieces
    assert shipped_json["pre_tokenizer"]["split"] is True and shipped_json["decoder"]["split"] is True


def test_an_older_tokenizer_json_gains_words_with_the_same_ids(tmp_path):
    """A tokenizer.json written with split=False (earlier exports, checkpoints) gets words on load."""
    from kobert.encoding import TextEncoder

    backend = build_backend_tokenizer(shipped("tokenizer") / "tokenizer.model")
    backend.pre_tokenizer.split = False
    backend.decoder.split = False
    old = tmp_path / "old"
    old.mkdir()
    backend.save(str(old / "tokenizer.json"))
    texts = GOLDEN + SPACED

    before = [e.ids for e in backend.encode_batch(texts)]
    assert all(set(w for w in e.word_ids if w is not None) <= {0} for e in backend.encode_batch(texts))
    encoder = TextEncoder(old, 512)
    assert [e.ids for e in encoder.encodings(texts)] == before
    assert [word_starts(e.word_ids, e.offsets, t) for e, t in zip(encoder.encodings(texts), texts)] == \
        [split_starts(t) for t in texts]
    tokenizer = get_tokenizer(old)
    assert tokenizer(texts)["input_ids"] == before
    assert tokenizer(GOLDEN[0]).word_ids() == [None, 0, 0, 1, 1, 2, 2, 2, None]
    saved = tmp_path / "saved"
    tokenizer.save_pretrained(str(saved))
    assert json.loads((saved / "tokenizer.json").read_text(encoding="utf-8"))["pre_tokenizer"]["split"] is True


def test_split_words_leaves_other_tokenizers_alone():
    from tokenizers import Tokenizer, models, pre_tokenizers

    # A piece with "▁" inside could span two words: splitting would change its ids.
    inside = Tokenizer(models.Unigram([("<unk>", 0.0), ("▁a▁b", -1.0), ("▁a", -2.0), ("▁b", -2.0)], unk_id=0))
    inside.pre_tokenizer = pre_tokenizers.Metaspace(split=False)
    assert split_words(inside) is False and inside.pre_tokenizer.split is False
    assert split_words(build_backend_tokenizer(shipped("tokenizer") / "tokenizer.model")) is False  # already split
    whitespace = Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0)], unk_id=0))
    whitespace.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    assert split_words(whitespace) is False
