"""KoBERT tokenizer: a SentencePiece Unigram model rebuilt as a Rust `tokenizers` pipeline.

Ids follow KoBERT's rule: [UNK]=0 [PAD]=1 [CLS]=2 [SEP]=3 [MASK]=4, then every
non-control SentencePiece piece sorted by Python string order (8,002 ids for the
8,000-piece KoBERT model).  The normaliser reproduces SentencePiece's
`nmt_nfkc` charsmap exactly on the texts we test (see `_normalizer`).

Known residue (measured, see tests/test_tokenizer.py): sentencepiece sums piece
scores in float32 and `tokenizers` in float64, so when two segmentations have
exactly the same total score (e.g. "...." = "."+"..." or "..."+"."),
sentencepiece's choice is float32 rounding noise that depends on the whole
prefix of the sentence.  No static rule reproduces it; the ids differ only in
the order of tied pieces (about 0.25% of NSMC documents).
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

SPECIAL_TOKENS = ("[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]")
MODEL_MAX_LENGTH = 512
DEFAULT_TOKENIZER_DIR = Path(__file__).parent / "assets" / "tokenizer"
SP_MODEL_NAMES = ("tokenizer.model", "spiece.model")

# A Unicode noncharacter ("reserved for internal use"): inserted before a
# trailing jamo to stop NFKC composing it into the preceding syllable, then removed.
_BLOCKER = "\ufdd0"
# Characters that sentencepiece's charsmap keeps but the NFKC of `tokenizers`
# changes (nmt_nfkc keeps U+FF5E; U+1F23B is newer than sentencepiece's tables).
# They are parked on noncharacters across the NFKC step.
_NFKC_EXCEPTIONS = {"\uff5e": "\ufdd1", "\U0001f23b": "\ufdd2"}


class TokenizerFileError(ValueError):
    """A tokenizer path is missing or is not a SentencePiece model / tokenizer directory."""


def load_sentencepiece_proto(model_file: str | Path):
    """Parse a SentencePiece `.model` file into its ModelProto, naming the file on failure."""
    from sentencepiece import sentencepiece_model_pb2

    path = Path(model_file)
    if not path.is_file():
        raise TokenizerFileError(f"{path}: no such SentencePiece model file")
    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as exc:  # protobuf raises DecodeError or RuntimeError depending on backend
        raise TokenizerFileError(f"{path}: not a SentencePiece model ({exc})") from exc
    if not proto.pieces:
        raise TokenizerFileError(f"{path}: not a SentencePiece model (no pieces)")
    return proto


def kobert_vocab(proto) -> list[tuple[str, float]]:
    """(piece, score) in KoBERT id order: the 5 specials, then NORMAL pieces sorted by code point."""
    if proto.trainer_spec.model_type not in (0, 1):  # 0 = unset (defaults to UNIGRAM), 1 = UNIGRAM
        raise TokenizerFileError("KoBERT tokenizers are Unigram models; this model is not")
    # Type 1 = NORMAL.  <unk>/<s>/</s> (UNKNOWN/CONTROL) are replaced by our specials.
    pieces = sorted((p.piece, p.score) for p in proto.pieces if p.type == 1)
    return [(tok, 0.0) for tok in SPECIAL_TOKENS] + pieces


def _jamo_forms(lo: int, hi: int) -> str:
    """Compatibility / halfwidth jamo whose NFKC is a single conjoining jamo in [lo, hi], as a regex class body."""
    forms = []
    for cp in list(range(0x3131, 0x318F)) + list(range(0xFFA0, 0xFFDD)):
        nfkc = unicodedata.normalize("NFKC", chr(cp))
        if len(nfkc) == 1 and lo <= ord(nfkc) <= hi:
            forms.append(cp)
    return "".join(f"\\x{{{cp:X}}}" for cp in forms)


def _normalizer(precompiled_charsmap: bytes):
    """A `tokenizers` normaliser equal to sentencepiece's charsmap + whitespace rules.

    Why not just `Precompiled`: sentencepiece does longest-prefix matching of
    multi-character keys ("ㅋㅠ" -> "큐", "A\u0302\u0300" -> "Ầ"), while the
    `tokenizers` Precompiled works per grapheme, never composing jamo and
    truncating some graphemes.  NFKC first performs those compositions; the
    charsmap then applies the nmt rules (controls removed, spaces unified).
    NFKC also composes a precomposed syllable with a following trailing jamo
    ("가ㄳ" -> "갃") which sentencepiece does not (it has no such key), so a
    blocker goes in front of every trailing jamo that does not follow a vowel.
    """
    from tokenizers import Regex, normalizers

    trailing = "\\x{11A8}-\\x{11FF}\\x{D7CB}-\\x{D7FB}" + _jamo_forms(0x11A8, 0x11FF)
    vowel = "\\x{1160}-\\x{11A7}\\x{D7B0}-\\x{D7C6}" + _jamo_forms(0x1160, 0x11A7)
    steps = [
        # Lookbehind needs a preceding character: a zero-width insertion at offset 0
        # panics in tokenizers' NFC alignment code, and nothing precedes it to compose with anyway.
        normalizers.Replace(Regex(f"(?<=[^{vowel}])(?=[{trailing}])"), _BLOCKER),
        *(normalizers.Replace(src, tmp) for src, tmp in _NFKC_EXCEPTIONS.items()),
        normalizers.NFKC(),
        normalizers.Precompiled(precompiled_charsmap),
        normalizers.NFC(),
        normalizers.Replace(Regex(f"{_BLOCKER}(?=[{trailing}])"), ""),
        *(normalizers.Replace(tmp, src) for src, tmp in _NFKC_EXCEPTIONS.items()),
        # sentencepiece's remove_extra_whitespaces: only U+0020 counts, after the charsmap.
        normalizers.Replace(Regex(" {2,}"), " "),
        normalizers.Replace(Regex("^ +| +$"), ""),
    ]
    return normalizers.Sequence(steps)


def build_backend_tokenizer(model_file: str | Path):
    """The raw `tokenizers.Tokenizer` for a KoBERT SentencePiece model file."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    proto = load_sentencepiece_proto(model_file)
    spec = proto.normalizer_spec
    if not spec.precompiled_charsmap:
        raise TokenizerFileError(f"{model_file}: normalizer '{spec.name}' has no precompiled charsmap")
    vocab = kobert_vocab(proto)
    tok = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=False))
    tok.normalizer = _normalizer(spec.precompiled_charsmap)
    # split=False: one Viterbi over the whole text, like sentencepiece (pieces never span "▁" anyway).
    scheme = "always" if spec.add_dummy_prefix else "never"
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=False)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme, split=False)
    cls, sep = SPECIAL_TOKENS.index("[CLS]"), SPECIAL_TOKENS.index("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tok


def _wrap(backend):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MODEL_MAX_LENGTH,
        padding_side="right",
        truncation_side="right",
        # BERT takes token types; without this transformers drops them from the encoding.
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def _find_model_file(directory: Path) -> Path | None:
    for name in SP_MODEL_NAMES:
        if (directory / name).is_file():
            return directory / name
    models = sorted(directory.glob("*.model")) + sorted(directory.glob("*.spiece"))
    return models[0] if models else None


def get_tokenizer(path: str | Path | None = None):
    """A `transformers.PreTrainedTokenizerFast` for KoBERT.

    `path`: a SentencePiece model file (`.model`/`.spiece`), a directory holding
    `tokenizer.json` (as written by `save_pretrained`) or a SentencePiece model,
    or None for the default shipped in `kobert/assets/tokenizer/`.
    """
    if path is None:
        path = DEFAULT_TOKENIZER_DIR
        if not (path / "tokenizer.json").is_file():
            raise TokenizerFileError(
                f"{path}: the shipped default tokenizer is missing (no tokenizer.json); "
                "reinstall kobert or pass a SentencePiece model path"
            )
    path = Path(path)
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            from transformers import PreTrainedTokenizerFast

            return PreTrainedTokenizerFast.from_pretrained(str(path))
        model_file = _find_model_file(path)
        if model_file is None:
            raise TokenizerFileError(f"{path}: directory has neither tokenizer.json nor a SentencePiece .model file")
        path = model_file
    if not path.exists():
        raise TokenizerFileError(f"{path}: no such file or directory")
    return _wrap(build_backend_tokenizer(path))
