"""Train a KoBERT-format SentencePiece Unigram tokenizer from text files.

KoBERT's format: a Unigram model with nmt_nfkc normalisation whose SentencePiece
vocabulary is `vocab_size - 2` pieces (<unk> <s> </s> + normal pieces); the
KoBERT id rule (kobert.tokenizer.kobert_vocab) then drops <unk> <s> </s> and adds
the 5 BERT specials, giving `vocab_size` ids in total.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

from kobert.training.corpus import iter_documents, regex_split

DEFAULT_MAX_SENTENCES = 1_000_000
# sentencepiece's own default; longer lines are skipped by the trainer, so we cut them.
MAX_SENTENCE_CHARS = 4192
SP_MODEL_NAME = "tokenizer.model"


def iter_sentences(corpus_file: str | Path) -> Iterator[str]:
    """Sentences of a plain or .xz text file (one document per line, split after . ! ?).

    Wikipedia lines are whole articles; the trainer wants sentence-sized lines.
    """
    for document in iter_documents(corpus_file, min_chars=1):
        for sentence in regex_split(document):
            yield sentence[:MAX_SENTENCE_CHARS]


def sample_sentences(corpus_files, max_sentences: int | None, seed: int) -> list[str]:
    """Reservoir sample of at most `max_sentences` lines over all files (all lines if None)."""
    rng = random.Random(seed)
    sample: list[str] = []
    seen = 0
    for corpus_file in corpus_files:
        for line in iter_sentences(corpus_file):
            seen += 1
            if max_sentences is None or len(sample) < max_sentences:
                sample.append(line)
            else:
                slot = rng.randrange(seen)
                if slot < max_sentences:
                    sample[slot] = line
    if not sample:
        raise ValueError(f"no text found in {[str(f) for f in corpus_files]}")
    return sample


def train_tokenizer(
    corpus_files: list[str | Path],
    out_dir: str | Path,
    vocab_size: int = 8002,
    max_sentences: int | None = DEFAULT_MAX_SENTENCES,
    seed: int = 0,
    num_threads: int = 2,
) -> Path:
    """Train a KoBERT-format tokenizer; write `out_dir/tokenizer.model` and the fast tokenizer files.

    `vocab_size` counts KoBERT ids (SentencePiece trains `vocab_size - 2` pieces).
    Returns `out_dir`.
    """
    import sentencepiece as spm

    from kobert.tokenizer import get_tokenizer

    if vocab_size < 8:
        raise ValueError(f"vocab_size={vocab_size}: need at least 8 ids (5 specials + 3 pieces)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sentences = sample_sentences([Path(f) for f in corpus_files], max_sentences, seed)
    model_prefix = out / "tokenizer"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_prefix=str(model_prefix),
        model_type="unigram",
        vocab_size=vocab_size - 2,
        normalization_rule_name="nmt_nfkc",
        character_coverage=0.9995,  # KoBERT's setting: rare Hanja/emoji fall to [UNK]
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        input_sentence_size=0,  # we already sampled; keep the trainer deterministic
        shuffle_input_sentence=False,
        num_threads=num_threads,
        minloglevel=2,
        # Small corpora (tests) cannot always reach the requested size exactly.
        hard_vocab_limit=False,
    )
    (out / "tokenizer.vocab").unlink(missing_ok=True)  # the id rule lives in tokenizer.json
    get_tokenizer(out / SP_MODEL_NAME).save_pretrained(str(out))
    return out
