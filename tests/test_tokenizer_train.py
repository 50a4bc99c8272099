"""train_tokenizer on a small self-made corpus, round-tripped through get_tokenizer."""

import lzma

import pytest

from conftest import generate_korean_documents


def test_trained_tokenizer_format(small_tokenizer_dir):
    import sentencepiece as spm

    from kobert.tokenizer import get_tokenizer

    files = {p.name for p in small_tokenizer_dir.iterdir()}
    assert {"tokenizer.model", "tokenizer.json", "tokenizer_config.json"} <= files
    sp = spm.SentencePieceProcessor(model_file=str(small_tokenizer_dir / "tokenizer.model"))
    assert sp.get_piece_size() == 598  # 600 ids = 597 pieces + <unk> <s> </s> ... - 3 + 5 specials
    from_dir, from_model = get_tokenizer(small_tokenizer_dir), get_tokenizer(small_tokenizer_dir / "tokenizer.model")
    assert len(from_dir) == len(from_model) == 600
    assert from_dir.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]"]
    texts = generate_korean_documents(200, seed=11)
    assert from_dir(texts)["input_ids"] == from_model(texts)["input_ids"]


def test_train_from_xz_matches_plain(tmp_path):
    from kobert.tokenizer import get_tokenizer
    from kobert.tokenizer_train import train_tokenizer

    text = "\n".join(generate_korean_documents(1500, seed=5)) + "\n"
    plain = tmp_path / "c.txt"
    plain.write_text(text, encoding="utf-8")
    packed = tmp_path / "c.txt.xz"
    with lzma.open(packed, "wt", encoding="utf-8") as handle:
        handle.write(text)
    from kobert.tokenizer_train import sample_sentences

    assert sample_sentences([packed], None, seed=0) == sample_sentences([plain], None, seed=0)
    out = train_tokenizer([packed], tmp_path / "b", vocab_size=600)
    assert len(get_tokenizer(out)) == 600


def test_sampling_caps_sentences(tmp_path):
    from kobert.tokenizer_train import sample_sentences

    corpus = tmp_path / "c.txt"
    corpus.write_text("첫 문장. 둘째 문장!\n셋째\n\n넷째?\n", encoding="utf-8")
    assert sample_sentences([corpus], None, seed=0) == ["첫 문장.", "둘째 문장!", "셋째", "넷째?"]
    assert len(sample_sentences([corpus], 2, seed=0)) == 2


def test_missing_corpus_is_named(tmp_path):
    from kobert.tokenizer_train import train_tokenizer

    with pytest.raises(FileNotFoundError, match="nope.txt"):
        train_tokenizer([tmp_path / "nope.txt"], tmp_path / "out", vocab_size=100)
