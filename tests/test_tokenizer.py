"""KoBERT tokenizer vs. the independent reference: sentencepiece + KoBERT's id rule.

Known residue: sentencepiece accumulates Viterbi scores in float32, tokenizers
in float64.  When two segmentations tie exactly (e.g. "...." = "."+"..." or
"..."+"."), sentencepiece's pick is float32 rounding noise over the whole
sentence prefix, which no static tokenizer.json can reproduce.  Those documents
get the same pieces in a different order; every other document must be identical.
Measured: 501 of the 200,000 NSMC documents (0.25%), all tie permutations.
"""

import csv
import json

import pytest

from conftest import generate_korean_documents, shared_data_dir

PUBLISHED_TEXT = "한국어 모델을 공유합니다."
PUBLISHED_IDS = [2, 4958, 6855, 2046, 7088, 1050, 7843, 54, 3]
# Upper bounds for tie-permutation residue (see module docstring); measured 100 / 401.
MAX_TIE_FRACTION = 0.004


class Reference:
    """sentencepiece encoding mapped to KoBERT ids by the id rule, from the model file alone."""

    def __init__(self, model_file):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        normal = sorted(
            self.sp.id_to_piece(i)
            for i in range(self.sp.get_piece_size())
            if not (self.sp.is_unknown(i) or self.sp.is_control(i))
        )
        self.piece_to_id = {p: i + 5 for i, p in enumerate(normal)}

    def ids(self, text):
        pieces = self.sp.encode(text, out_type=str)
        sp_ids = self.sp.encode(text)
        return [0 if self.sp.is_unknown(i) else self.piece_to_id[p] for p, i in zip(pieces, sp_ids)]


def compare(tokenizer, reference, texts):
    """(exact, tie_permutations, other_mismatches) of fast-tokenizer vs reference ids."""
    ours = tokenizer(texts, add_special_tokens=False)["input_ids"]
    exact, ties, other = 0, [], []
    for text, got in zip(texts, ours):
        want = reference.ids(text)
        if got == want:
            exact += 1
        elif sorted(got) == sorted(want):
            ties.append(text)
        else:
            other.append((text, got, want))
    return exact, ties, other


@pytest.fixture(scope="module")
def kobert_tok(kobert_sp_model_file):
    from kobert.tokenizer import get_tokenizer

    return get_tokenizer(kobert_sp_model_file)


@pytest.fixture(scope="module")
def reference(kobert_sp_model_file):
    return Reference(kobert_sp_model_file)


@pytest.fixture(scope="module", params=["shipped", "kobert"])
def tok_and_reference(request):
    """BERT-encoding behaviour, on the shipped model (always, a clean clone has it) and on KoBERT's (shared data)."""
    from kobert.checkpoint import shipped
    from kobert.tokenizer import get_tokenizer

    model_file = shipped("tokenizer") / "tokenizer.model"
    if request.param == "kobert":
        model_file = request.getfixturevalue("kobert_sp_model_file")
    return get_tokenizer(model_file), Reference(model_file)


# ----------------------------------------------------------------- id rule, published example


@pytest.mark.shared_data
def test_id_rule_matches_published_vocab(kobert_tok):
    vocab_file = shared_data_dir() / "reference_vocabs" / "kobert_vocab_8002.txt"
    expected = vocab_file.read_text(encoding="utf-8").split("\n")[:8002]
    assert len(kobert_tok) == 8002
    assert kobert_tok.convert_ids_to_tokens(list(range(8002))) == expected


@pytest.mark.shared_data
def test_published_example(kobert_tok):
    enc = kobert_tok(PUBLISHED_TEXT)
    assert enc["input_ids"] == PUBLISHED_IDS
    assert enc["token_type_ids"] == [0] * 9
    assert enc["attention_mask"] == [1] * 9


# ----------------------------------------------------------------- conformance on corpora


def _nsmc_documents():
    docs = []
    for split in ("train", "test"):
        path = shared_data_dir() / "nsmc" / f"ratings_{split}.txt"
        if not path.is_file():
            pytest.skip(f"{path}: shared data not available")
        with open(path, newline="", encoding="utf-8") as handle:
            rows = csv.reader(handle, delimiter="\t")
            next(rows)
            docs.extend(row[1] for row in rows)
    return docs


def _has_hangul(text):
    return any("\uac00" <= ch <= "\ud7a3" for ch in text)


def _json_strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _json_strings(item)
    elif isinstance(node, dict):
        for item in node.values():
            yield from _json_strings(item)


def _benchmark_texts():
    """Every Hangul-bearing string/cell of the KLUE, KorNLU and KorQuAD files in shared data."""
    texts = []
    for sub in ("klue", "kornlu", "korquad"):
        root = shared_data_dir() / sub
        for path in sorted(root.rglob("*")):
            if path.suffix == ".json":
                texts.extend(_json_strings(json.loads(path.read_text(encoding="utf-8"))))
            elif path.suffix == ".tsv":
                with open(path, newline="", encoding="utf-8") as handle:
                    for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                        texts.extend(row)
    texts = sorted({t for t in texts if _has_hangul(t)})
    if not texts:
        pytest.skip(f"{shared_data_dir()}: no KLUE/KorNLU/KorQuAD texts")
    return texts


@pytest.mark.shared_data
def test_nsmc_conformance(kobert_tok, reference):
    docs = _nsmc_documents()
    assert len(docs) == 200_000
    exact, ties, other = compare(kobert_tok, reference, docs)
    assert other == []  # normalisation, unknowns and scores: identical everywhere
    assert len(ties) <= MAX_TIE_FRACTION * len(docs), len(ties)


@pytest.mark.shared_data
def test_benchmark_texts_conformance(kobert_tok, reference):
    texts = _benchmark_texts()
    exact, ties, other = compare(kobert_tok, reference, texts)
    assert other == []
    assert len(ties) <= MAX_TIE_FRACTION * len(texts), len(ties)


@pytest.mark.shared_data
def test_normaliser_web_text(kobert_tok, reference):
    """Jamo recomposition as sentencepiece does it: the generic SpmConverter gets these wrong."""
    for text in ["보고 울엇닼ㅋㅠㅠ", "ㅋㅋㅋ ㅠㅠ ㅡㅡ;", "가ㄳ ㅋㅠㄳ", "큐", "ｶﾞ ～ Ầ", "진짜ㅄ"]:
        assert kobert_tok(text, add_special_tokens=False)["input_ids"] == reference.ids(text), text


def test_generated_corpus_conformance(small_tokenizer_dir):
    """Without shared data: a tokenizer trained here, checked on generated documents."""
    from kobert.tokenizer import get_tokenizer

    model_file = small_tokenizer_dir / "tokenizer.model"
    tok, ref = get_tokenizer(model_file), Reference(model_file)
    docs = generate_korean_documents(3000, seed=7)
    exact, ties, other = compare(tok, ref, docs)
    assert other == []
    assert len(ties) <= 0.02 * len(docs)  # generated text is dense in repeated punctuation


# ----------------------------------------------------------------- BERT encoding behaviour


def test_pair_encoding(tok_and_reference):
    kobert_tok, _ = tok_and_reference
    enc = kobert_tok("한국어", "모델")
    a, b = kobert_tok("한국어")["input_ids"], kobert_tok("모델")["input_ids"]
    assert enc["input_ids"] == a + b[1:]
    assert enc["token_type_ids"] == [0] * len(a) + [1] * (len(b) - 1)


def test_truncation_and_padding(tok_and_reference):
    kobert_tok, _ = tok_and_reference
    assert kobert_tok.model_max_length == 512
    long = "가 " * 2000
    single = kobert_tok(long, truncation=True)["input_ids"]
    assert len(single) == 512 and single[0] == 2 and single[-1] == 3
    pair = kobert_tok(long, "나 " * 10, truncation="longest_first")
    assert len(pair["input_ids"]) == 512 and pair["token_type_ids"].count(1) == 11  # "▁나" x10 + [SEP]
    batch = kobert_tok(["한국어", "한국어 모델을 공유합니다."], padding=True)
    assert batch["input_ids"][0][-1] == 1 and batch["attention_mask"][0][-1] == 0


def test_offsets(tok_and_reference):
    kobert_tok, _ = tok_and_reference
    text = "한국어 모델을 공유합니다."
    enc = kobert_tok(text, return_offsets_mapping=True)
    tokens = kobert_tok.convert_ids_to_tokens(enc["input_ids"])
    for token, (start, end) in zip(tokens[1:-1], enc["offset_mapping"][1:-1]):
        assert text[start:end].lstrip(" ") == token.lstrip("▁")  # "▁" maps back to the space


# Defined behaviour for awkward inputs (documented in the README):
EDGE_CASES = {
    "": [2, 3],  # empty -> [CLS] [SEP]
    "   \t\n ": [2, 3],  # whitespace only -> nothing, like sentencepiece
}


@pytest.mark.parametrize(
    "text",
    ["", "   \t\n ", "😀 이모지 😀😀", "漢字 한자 韓國", "BERT는 Korean을 잘 안다", "a\x00b\x07c\x7f", "\u200b제로폭", "가" * 10_000],
)
def test_edge_cases_match_sentencepiece(tok_and_reference, text):
    kobert_tok, reference = tok_and_reference
    ids = kobert_tok(text, add_special_tokens=False)["input_ids"]
    assert ids == reference.ids(text)
    if text in EDGE_CASES:
        assert kobert_tok(text)["input_ids"] == EDGE_CASES[text]


def test_unpaired_surrogate_is_rejected(tok_and_reference):
    kobert_tok, reference = tok_and_reference
    """Not valid Unicode text: both the tokenizer and sentencepiece refuse it (no silent garbage)."""
    with pytest.raises(TypeError):
        kobert_tok("a\ud800b")
    with pytest.raises(RuntimeError):
        reference.sp.encode("a\ud800b")


# ----------------------------------------------------------------- save / load, errors


def test_save_pretrained_round_trip(tok_and_reference, tmp_path):
    kobert_tok, _ = tok_and_reference
    from transformers import AutoTokenizer

    kobert_tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    texts = generate_korean_documents(500, seed=3) + [PUBLISHED_TEXT]
    assert loaded(texts)["input_ids"] == kobert_tok(texts)["input_ids"]
    assert loaded(texts[:50], texts[50:100])["token_type_ids"] == kobert_tok(texts[:50], texts[50:100])["token_type_ids"]
    assert loaded.model_max_length == 512 and loaded.pad_token_id == 1


def test_errors_name_the_file(tmp_path):
    from kobert.tokenizer import TokenizerFileError, get_tokenizer

    with pytest.raises(TokenizerFileError, match="missing.model"):
        get_tokenizer(tmp_path / "missing.model")
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"\xff\x00not a proto")
    with pytest.raises(TokenizerFileError, match="junk.model.*not a SentencePiece model"):
        get_tokenizer(junk)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TokenizerFileError, match="empty.*neither tokenizer.json"):
        get_tokenizer(empty)


def test_default_tokenizer_loads():
    from kobert.tokenizer import DEFAULT_TOKENIZER_DIR, get_tokenizer

    if not (DEFAULT_TOKENIZER_DIR / "tokenizer.json").is_file():
        pytest.skip("default tokenizer not built yet")
    tok = get_tokenizer()
    enc = tok(PUBLISHED_TEXT)
    assert enc["input_ids"][0] == 2 and enc["input_ids"][-1] == 3 and len(tok) == 8002


# ----------------------------------------------------------------- why not XLNetTokenizer


@pytest.mark.shared_data
def test_xlnet_tokenizer_is_wrong_for_kobert(kobert_sp_model_file, kobert_tok):
    """What transformers' XLNetTokenizer does with the same model file (README: why not to use it)."""
    from transformers import XLNetTokenizer

    xlnet = XLNetTokenizer(vocab_file=str(kobert_sp_model_file))
    ids = xlnet(PUBLISHED_TEXT)["input_ids"]
    tokens = xlnet.convert_ids_to_tokens(ids)
    assert tokens[-2:] == ["<sep>", "<cls>"]  # specials appended at the end, XLNet style
    assert ids != PUBLISHED_IDS  # sentencepiece ids, not KoBERT's id rule
    web = xlnet.tokenize("ㅋㅠㅠ")
    ours = kobert_tok.tokenize("ㅋㅠㅠ")
    assert ours == ["▁", "큐", "ᅲ"]
    assert web != ours  # decomposed jamo / <unk> instead of sentencepiece's recomposition
