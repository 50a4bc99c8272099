"""KoBERT tokenizer: a SentencePiece Unigram model rebuilt as a Rust `tokenizers` pipeline.

Ids follow KoBERT's rule: [UNK]=0 [PAD]=1 [CLS]=2 [SEP]=3 [MASK]=4, then every
non-control SentencePiece piece sorted by Python string order (8,002 ids for the
8,000-piece KoBERT model).  The normaliser reproduces the model's own
SentencePiece charsmap (`nmt_nfkc`): NFKC, the charsmap, NFC and two blockers,
seams that keep combining marks as sentencepiece does (never reordered, composed
only inside a charsmap key: see `_seam_patterns`), plus the fixes found by
checking that pipeline against the charsmap on every key and every character NFKC
changes (see `_normalizer`).  tests/test_tokenizer_charsmap.py
compares every code point and every key with sentencepiece.

Accepted residue (measured, see tests/test_tokenizer.py): sentencepiece sums piece
scores in float32 and `tokenizers` in float64, so when two orders of the same
pieces tie exactly (e.g. "...." = "."+"..." or "..."+"."), sentencepiece's pick
is float32 rounding noise that depends on the whole prefix of the sentence, and
no static rule reproduces it.  There sentencepiece's own builds disagree with each
other: tensorflow-text's sentencepiece differs from the Python one on 14 of 1,000
NSMC reviews.  The ids differ only in the order of tied pieces (about 0.25% of
NSMC documents); kobert's tests allow only those tie reorderings.
"""

from __future__ import annotations

import functools
import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path

SPECIAL_TOKENS = ("[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]")
MODEL_MAX_LENGTH = 512
DEFAULT_TOKENIZER_DIR = Path(__file__).parent / "assets" / "tokenizer"
SP_MODEL_NAMES = ("tokenizer.model", "spiece.model")
# The tokenizer_class kobert writes: transformers 4.x and 5.x both resolve it (5.x names its class TokenizersBackend).
PORTABLE_TOKENIZER_CLASS = "PreTrainedTokenizerFast"
# Keys transformers 5 writes into tokenizer_config.json that describe the saving session, not the tokenizer.
SESSION_KEYS = ("backend", "is_local", "local_files_only")

# Noncharacters (Unicode: "reserved for internal use") that the normaliser inserts and removes again.
# Each removal step is exact even when the input itself contains these characters (see _core_steps, _fix_steps).
_JAMO_BLOCKER = "\ufdd0"  # before a trailing jamo: stops NFKC composing it into the preceding syllable
_MARK_BLOCKER = "\ufdd1"  # before a combining mark: the charsmap step must see the mark on its own
_TAG = "\ufdd2"  # after a character whose normalised form the NFKC step would change (see _fix_steps)
_SEAM = "\ufdd3"  # between characters the charsmap keeps apart and NFKC or NFC would join (see _seam_patterns)

# Conjoining jamo (Unicode's Hangul ranges): NFKC composes a syllable + trailing jamo.
_VOWEL_JAMO = ((0x1160, 0x11A7), (0xD7B0, 0xD7C6))
_TRAILING_JAMO = ((0x11A8, 0x11FF), (0xD7CB, 0xD7FB))
# Planes 4-13 hold no characters and 15-16 are private use: NFKC changes nothing there
# (and NUL, which separates texts when they are normalised together).
_NFKC_PLANES = ((0x1, 0x3FFFF), (0xE0000, 0xEFFFF))
# How often the derivation may add fixes and re-check (a fix can affect a longer key).
_MAX_FIX_ROUNDS = 3


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
    """(piece, score) in KoBERT id order: the 5 specials, then NORMAL pieces sorted by code point.

    A model whose first five pieces already are KoBERT's specials (skt/kobert-base-v1's
    `spiece.model`, whose KoBERTTokenizer uses sentencepiece's own ids) keeps its order.
    """
    if proto.trainer_spec.model_type not in (0, 1):  # 0 = unset (defaults to UNIGRAM), 1 = UNIGRAM
        raise TokenizerFileError("KoBERT tokenizers are Unigram models; this model is not")
    if [p.piece for p in proto.pieces[: len(SPECIAL_TOKENS)]] == list(SPECIAL_TOKENS):
        rest = proto.pieces[len(SPECIAL_TOKENS) :]
        return [(tok, 0.0) for tok in SPECIAL_TOKENS] + [(p.piece, p.score) for p in rest]
    # Type 1 = NORMAL.  <unk>/<s>/</s> (UNKNOWN/CONTROL) are replaced by our specials.
    pieces = sorted((p.piece, p.score) for p in proto.pieces if p.type == 1)
    return [(tok, 0.0) for tok in SPECIAL_TOKENS] + pieces


def charsmap_entries(precompiled_charsmap: bytes) -> dict[str, str]:
    """Every key -> normalised string of a sentencepiece precompiled charsmap.

    The format of sentencepiece's normalizer.cc: a little-endian uint32 (the trie's size
    in bytes), a darts-clone double array of uint32 units over the keys' UTF-8 bytes,
    then the NUL-terminated normalised strings whose offsets the leaves hold.
    """
    import numpy as np

    size = int.from_bytes(precompiled_charsmap[:4], "little")
    units = np.frombuffer(precompiled_charsmap, "<u4", size // 4, 4).astype(np.int64)
    strings = precompiled_charsmap[4 + size :]
    # A unit's children sit at child_base ^ byte (darts-clone: offset in bits 10-30, bit 9 scales it by 256).
    child_base = np.arange(len(units)) ^ ((units >> 10) << ((units & 0x200) >> 6))
    edges = _trie_edges(units, child_base)
    values: dict[int, str] = {}
    entries = {}
    for key, offset in _trie_leaves(units, child_base, edges):
        if offset not in values:
            values[offset] = strings[offset : strings.index(b"\0", offset)].decode()
        entries[key.decode()] = values[offset]
    return entries


def _trie_edges(units, child_base):
    """(first edge, edge count) per unit and (label, child) per edge, edges grouped by parent."""
    import numpy as np

    parents, labels, children = [], [], []
    for byte in range(1, 256):
        child = child_base ^ byte
        parent = np.nonzero(child < len(units))[0]
        child = child[parent]
        # The child's label must be the byte; value units (bit 31 set) never match.
        hit = (units[child] & 0x800000FF) == byte
        parents.append(parent[hit])
        labels.append(np.full(int(hit.sum()), byte, dtype=np.uint8))
        children.append(child[hit])
    parents, labels, children = np.concatenate(parents), np.concatenate(labels), np.concatenate(children)
    order = np.argsort(parents, kind="stable")
    first = np.searchsorted(parents[order], np.arange(len(units)))
    count = np.searchsorted(parents[order], np.arange(len(units)), side="right") - first
    return first, count, labels[order], children[order]


def _trie_leaves(units, child_base, edges):
    """(key bytes, value offset) for every key, walking the trie from the root one byte level at a time."""
    import numpy as np

    first, count, labels, children = edges
    nodes = np.array([0])
    levels = []  # per depth: (index of the parent path, byte) for every path of that length
    while len(nodes):
        n = count[nodes]
        edge = np.repeat(first[nodes] - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))
        levels.append((np.repeat(np.arange(len(nodes)), n), labels[edge]))
        nodes = children[edge]
        leaves = np.nonzero((units[nodes] >> 8) & 1)[0]
        offsets = units[child_base[nodes[leaves]]] & 0x7FFFFFFF
        columns, path = [], leaves
        for parent, byte in reversed(levels):
            columns.append(byte[path])
            path = parent[path]
        rows = np.stack(columns[::-1], axis=1)
        yield from zip((row.tobytes() for row in rows), offsets.tolist())


def _regex_literal(text: str) -> str:
    """`text` as a regex matching exactly it (every character as \\x{...})."""
    return "".join(f"\\x{{{ord(ch):X}}}" for ch in text)


def _codepoints(chars) -> str:
    """Regex class body for a set of characters."""
    return _regex_literal("".join(sorted(set(chars))))


def _jamo_class(singles: dict[str, str], ranges) -> str:
    """Regex class body: the conjoining jamo in `ranges` and every character the charsmap maps to one."""
    forms = [k for k, v in singles.items() if len(v) == 1 and any(lo <= ord(v) <= hi for lo, hi in ranges)]
    return "".join(f"\\x{{{lo:X}}}-\\x{{{hi:X}}}" for lo, hi in ranges) + _codepoints(forms)


def _mark_class(singles: dict[str, str]) -> str:
    """Regex class of the combining marks the charsmap leaves alone: the blocker's removal looks for them."""
    mapped = [k for k in singles if unicodedata.category(k).startswith("M")]
    return f"[\\p{{M}}&&[^{_codepoints(mapped)}]]" if mapped else "\\p{M}"


def _core_steps(precompiled_charsmap: bytes, singles: dict[str, str]) -> list:
    """NFKC, the model's charsmap, NFC, with the two blockers: the normaliser before any fixes.

    Why not just `Precompiled`: sentencepiece does longest-prefix matching of
    multi-character keys ("ㅋㅠ" -> "큐", "A\\u0302\\u0300" -> "Ầ"), while the
    `tokenizers` Precompiled works per grapheme, never composing jamo.  NFKC first
    performs those compositions; the charsmap then applies the nmt rules (controls
    removed, spaces unified).  Two blockers undo what this order gets wrong:
    NFKC composes a syllable with a following trailing jamo ("가ㄳ" -> "갃"), which
    sentencepiece does not (it has no such key), so a blocker goes in front of every
    trailing jamo that does not follow a vowel.  And when a short grapheme starts
    with a charsmap key, Precompiled returns that key's value and drops the rest
    ("\\ufffd\\u0301" -> " "), so a blocker separates every combining mark from its base.
    """
    from tokenizers import Regex, normalizers

    trailing = _jamo_class(singles, _TRAILING_JAMO)
    vowel = _jamo_class(singles, _VOWEL_JAMO)
    marks = _mark_class(singles)
    return [
        # Lookbehind needs a preceding character: a zero-width insertion at offset 0
        # panics in tokenizers' NFC alignment code, and nothing precedes it to compose with anyway.
        normalizers.Replace(Regex(f"(?<=[^{vowel}])(?=[{trailing}])"), _JAMO_BLOCKER),
        normalizers.NFKC(),
        normalizers.Replace(Regex(f"(?<=.)(?={marks})"), _MARK_BLOCKER),
        normalizers.Precompiled(precompiled_charsmap),
        # Removing exactly the blocker next to each mark (or jamo) keeps any in the input.
        normalizers.Replace(Regex(f"{_MARK_BLOCKER}(?={marks})"), ""),
        normalizers.NFC(),
        normalizers.Replace(Regex(f"{_JAMO_BLOCKER}(?=[{trailing}])"), ""),
    ]


def _fix_steps(fixes: dict[str, tuple[str, str]]) -> tuple[list, list]:
    """(steps before the core, steps after it) that give each fixed text its sentencepiece form.

    `fixes`: text -> (sentencepiece's form, what the core makes of that form).  A text
    whose form the core keeps is simply replaced by it up front.  Otherwise (e.g. "～",
    which nmt_nfkc keeps and NFKC turns into "~") it is replaced by its form followed by
    i tags, and after the core, that image + i tags is turned back into the form.  The
    input's own tags are first multiplied by m, so a run of tags that is not a multiple
    of m can only come from a fix, and i (1..m-1) tells apart fixes whose images coincide.
    """
    from tokenizers import Regex, normalizers

    tagged = {text: fix for text, fix in fixes.items() if fix[0] != fix[1]}
    by_image: dict[str, list[str]] = {}
    for text, (_, image) in tagged.items():
        by_image.setdefault(image, []).append(text)
    m = 1 + max((len(texts) for texts in by_image.values()), default=0)
    tags = {text: _TAG * (i + 1) for texts in by_image.values() for i, text in enumerate(texts)}
    # Longest first: a text that contains a shorter fixed text is replaced as a whole.
    before = [normalizers.Replace(_TAG, _TAG * m)] if tagged else []
    before += [normalizers.Replace(t, fixes[t][0] + tags.get(t, "")) for t in sorted(fixes, key=len, reverse=True)]
    after = []
    run_end = f"(?=(?:{_TAG * m})*(?!{_TAG}))"  # the rest of the run is the input's own tags
    for image in sorted(by_image, key=len, reverse=True):
        start = _regex_literal(image) if image else f"(?<!{_TAG})"
        for text in by_image[image]:
            after.append(normalizers.Replace(Regex(start + tags[text] + run_end), tagged[text][0]))
    if tagged:
        after.append(normalizers.Replace(_TAG * m, _TAG))
    return before, after


def _char_class(chars) -> str:
    """Regex class body for a set of characters, consecutive code points as ranges."""
    points = sorted({ord(ch) for ch in chars})
    runs: list[list[int]] = []
    for cp in points:
        if runs and runs[-1][1] == cp - 1:
            runs[-1][1] = cp
        else:
            runs.append([cp, cp])
    return "".join(f"\\x{{{lo:X}}}" + (f"-\\x{{{hi:X}}}" if hi > lo else "") for lo, hi in runs)


@functools.cache
def _combining_marks() -> frozenset[str]:
    """Every character whose compatibility decomposition starts with a combining mark (class > 0):
    what NFKC and NFC may reorder or compose with what precedes it.  Python's Unicode tables are
    newer than `tokenizers`' (measured: none of its marks is missing here); a seam before a mark
    that `tokenizers` does not know changes nothing."""
    marks = set()
    for cp in range(0x110000):
        ch = chr(cp)
        if unicodedata.combining(ch) or (unicodedata.decomposition(ch) and not 0xD800 <= cp <= 0xDFFF
                                          and unicodedata.combining(unicodedata.normalize("NFKD", ch)[0])):
            marks.add(ch)
    return frozenset(marks)


def _seam_patterns(entries: dict[str, str]) -> tuple[str, str, str]:
    """(class of the characters the charsmap deletes, class of the marks, pattern of the seams to take out again).

    sentencepiece replaces the longest charsmap key at each position and copies any other
    character, so it composes a mark only with what precedes it inside a key
    ("a\\u0323\\u0302" -> "ậ") and never reorders marks.  NFKC and NFC also compose across
    another mark ("a\\u0316\\u0301" -> "á\\u0316", "ạ\\u0302" -> "ậ"), put marks in canonical
    order ("\\u0301\\u0316" -> "\\u0316\\u0301"), and compose across a control the charsmap
    deleted ("e\\x01\\u0301" -> "é").  So a seam (a starter: nothing composes or reorders
    across it) goes before every mark, is taken out again where the mark and the character
    before it are neighbours in some key, and replaces every run of deleted characters.
    """
    marks = _combining_marks()
    continued = {key[0] for key in entries if len(key) > 1}
    deleted = [key for key, value in entries.items() if len(key) == 1 and not value and key not in continued]
    joined: dict[str, set[str]] = {}
    for key in entries:
        for before, mark in zip(key, key[1:]):
            if mark in marks:
                joined.setdefault(before, set()).add(mark)
    by_marks: dict[frozenset[str], list[str]] = {}
    for before, after in joined.items():
        by_marks.setdefault(frozenset(after), []).append(before)
    seam = _regex_literal(_SEAM)
    pairs = "|".join(f"(?<=[{_char_class(befores)}]{seam})(?=[{_char_class(after)}])"
                     for after, befores in sorted(by_marks.items(), key=lambda item: sorted(item[1])))
    return _char_class(deleted), _char_class(marks), f"{seam}(?:{pairs})" if pairs else ""


def _seam_steps(patterns: tuple[str, str, str]) -> tuple[list, list]:
    """(steps before everything, steps before the whitespace rules): the seams put in and taken out.

    The input's own seam characters are doubled first and each seam put in stands alone,
    so taking one out of every odd run and halving the rest is exact.
    """
    from tokenizers import Regex, normalizers

    deleted, marks, joined = patterns
    seam = _regex_literal(_SEAM)
    put = [normalizers.Replace(_SEAM, _SEAM * 2),
           normalizers.Replace(Regex(f"(?=[{marks}])(?<=[^{seam}{deleted}])"), _SEAM)]
    if joined:
        put.append(normalizers.Replace(Regex(joined), ""))
    if deleted:  # one per run, not before the input's own (doubled) seams: that run would turn even
        put.append(normalizers.Replace(Regex(f"[{deleted}]+(?=[^{seam}])"), _SEAM))
    take = [normalizers.Replace(Regex(f"(?<!{seam}){seam}(?=(?:{seam}{seam})*(?!{seam}))"), ""),
            normalizers.Replace(_SEAM * 2, _SEAM)]
    return put, take


@functools.cache
def _nfkc_changed() -> tuple[str, ...]:
    """Every character that `tokenizers`' NFKC changes (its Unicode tables, not Python's)."""
    from tokenizers import normalizers

    chars = [chr(cp) for lo, hi in _NFKC_PLANES for cp in range(lo, hi + 1) if not 0xD800 <= cp <= 0xDFFF]
    # NUL is a starter that composes with nothing, so each character is normalised on its own.
    images = normalizers.NFKC().normalize_str("\0".join(chars)).split("\0")
    return tuple(ch for ch, image in zip(chars, images) if image != ch)


def _normalise_each(steps: list, texts: list[str]) -> list[str]:
    """Each text through `steps`, in one call (NUL separates them: no charsmap key or rule spans it)."""
    from tokenizers import normalizers

    out = normalizers.Sequence(steps).normalize_str("\0".join(texts)).split("\0")
    if len(out) != len(texts):
        raise RuntimeError("normaliser produced NUL; cannot check it per text")
    return out


@functools.lru_cache(maxsize=8)
def _normaliser_fixes(precompiled_charsmap: bytes) -> tuple[dict[str, str], tuple[str, str, str], dict]:
    """(single-character charsmap entries, seam patterns, fixes): the fixes are where the seams and the
    core differ from sentencepiece, found by checking.

    Sentencepiece maps a charsmap key to its value and keeps any other single character,
    so checking every key and every character NFKC changes covers every single
    character (the core leaves all others alone).  Fixes are added until none is left;
    a fix can only change texts that share a character with a fixed text, so only
    those are checked again.
    """
    entries = charsmap_entries(precompiled_charsmap)
    singles = {key: value for key, value in entries.items() if len(key) == 1}
    core = _core_steps(precompiled_charsmap, singles)
    seams = _seam_patterns(entries)
    put, take = _seam_steps(seams)
    expected = entries | {ch: ch for ch in _nfkc_changed() if ch not in entries}  # text -> sentencepiece's form
    texts = list(expected)
    fixes: dict[str, tuple[str, str]] = {}
    for _ in range(_MAX_FIX_ROUNDS):
        before, after = _fix_steps(fixes)
        got = _normalise_each(put + before + core + after + take, texts)
        wrong = {text: expected[text] for text, out in zip(texts, got) if out != expected[text]}
        if not wrong:
            return singles, seams, fixes
        images = _normalise_each(core, list(wrong.values()))
        fixes.update({text: (form, image) for (text, form), image in zip(wrong.items(), images)})
        touched = set("".join(fixes))
        texts = [text for text in texts if not touched.isdisjoint(text)]
    raise RuntimeError(f"cannot reproduce sentencepiece's charsmap on {sorted(wrong)[:10]}")


def _normalizer(precompiled_charsmap: bytes):
    """A `tokenizers` normaliser equal to sentencepiece's charsmap + whitespace rules.

    The core (`_core_steps`) plus the fixes this model's charsmap needs: found by
    comparing the core with the charsmap on every key and character (cached per charsmap).
    """
    from tokenizers import Regex, normalizers

    singles, seams, fixes = _normaliser_fixes(precompiled_charsmap)
    before, after = _fix_steps(fixes)
    put, take = _seam_steps(seams)
    whitespace = [
        # sentencepiece's remove_extra_whitespaces: only U+0020 counts, after the charsmap.
        normalizers.Replace(Regex(" {2,}"), " "),
        normalizers.Replace(Regex("^ +| +$"), ""),
    ]
    return normalizers.Sequence(put + before + _core_steps(precompiled_charsmap, singles) + after + take + whitespace)


def build_backend_tokenizer(model_file: str | Path):
    """The raw `tokenizers.Tokenizer` for a KoBERT SentencePiece model file."""
    return _backend_from_proto(load_sentencepiece_proto(model_file), model_file)


def _backend_from_proto(proto, model_file: str | Path):
    """The raw `tokenizers.Tokenizer` for a parsed SentencePiece model (`model_file` names it in errors)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    spec = proto.normalizer_spec
    if not spec.precompiled_charsmap:
        raise TokenizerFileError(f"{model_file}: normalizer '{spec.name}' has no precompiled charsmap")
    vocab = kobert_vocab(proto)
    tok = Tokenizer(models.Unigram(vocab, unk_id=0, byte_fallback=False))
    tok.normalizer = _normalizer(spec.precompiled_charsmap)
    # split=True: one Viterbi per "▁" word, so word_ids() are the (normalised) text's whitespace words,
    # which transformers' QA pipeline aligns answers to. sentencepiece runs one Viterbi over the whole
    # text, but no piece holds a "▁" after its start, so the ids are the same: measured identical to
    # split=False on all 200,000 NSMC documents and 148,845 KLUE/KorNLU/KorQuAD strings, for KoBERT's
    # model and the shipped one (benchmarks/tokenizer_split_check.py).
    scheme = "always" if spec.add_dummy_prefix else "never"
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme, split=True)
    cls, sep = SPECIAL_TOKENS.index("[CLS]"), SPECIAL_TOKENS.index("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tok


def split_words(backend) -> bool:
    """Give a tokenizer.json written before words (Metaspace `split=False`) its words, in memory.

    Done only when no piece holds "▁" after its start (true of every SentencePiece model trained
    with split_by_whitespace, KoBERT's and kobert's): then every segmentation is one per word, so
    the ids stay (0 differences measured, benchmarks/tokenizer_split_check.py) and an old export or
    checkpoint gains `word_ids()`. Returns whether it changed anything.
    """
    from tokenizers import decoders, models, pre_tokenizers

    pre = backend.pre_tokenizer
    if not isinstance(pre, pre_tokenizers.Metaspace) or pre.split or not isinstance(backend.model, models.Unigram):
        return False
    if any(pre.replacement in piece[1:] for piece in backend.get_vocab(with_added_tokens=False)):
        return False
    pre.split = True
    if isinstance(backend.decoder, decoders.Metaspace):
        backend.decoder.split = True
    return True


def write_portable_tokenizer_class(config_file: str | Path) -> None:
    """Set a saved `tokenizer_config.json`'s `tokenizer_class` to one transformers 4.x and 5.x both load.

    transformers 5 writes its class's own name, `TokenizersBackend`, which 4.x (still
    required by Optimum) does not know; both resolve `PreTrainedTokenizerFast`.
    """
    path = Path(config_file)
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = PORTABLE_TOKENIZER_CLASS
    # transformers' own layout, so a rewritten file differs from a saved one only in that line.
    path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def portable_tokenizer_config(path: Path) -> dict:
    """A tokenizer_config.json for other tools (Optimum, transformers.js): the portable class
    (see `write_portable_tokenizer_class`), without the keys that describe the saving session."""
    try:
        config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    config = {key: value for key, value in config.items() if key not in SESSION_KEYS}
    config["tokenizer_class"] = PORTABLE_TOKENIZER_CLASS
    # The Metaspace decoder already places spaces; 4.x would otherwise warn about this default.
    config.setdefault("clean_up_tokenization_spaces", False)
    return config


@functools.cache
def _tokenizer_class():
    """`PreTrainedTokenizerFast` whose `save_pretrained` writes the portable `tokenizer_class`.

    Built on first use so that `import kobert` does not import transformers; the
    module's `__getattr__` hands it to pickle as `kobert.tokenizer.KoBertTokenizerFast`.
    """
    from transformers import PreTrainedTokenizerFast

    class KoBertTokenizerFast(PreTrainedTokenizerFast):
        def save_pretrained(self, save_directory, *args, **kwargs):
            files = super().save_pretrained(save_directory, *args, **kwargs)
            for file in files or ():
                if str(file).endswith("tokenizer_config.json"):
                    write_portable_tokenizer_class(file)
            return files

    KoBertTokenizerFast.__module__ = __name__
    KoBertTokenizerFast.__qualname__ = "KoBertTokenizerFast"
    return KoBertTokenizerFast


def __getattr__(name: str):
    """PEP 562: `KoBertTokenizerFast` is made on demand, so pickle can find it even before get_tokenizer runs."""
    if name == "KoBertTokenizerFast":
        return _tokenizer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _wrap(backend):
    return _tokenizer_class()(
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


def _json_steps(node) -> list[dict]:
    """A tokenizer.json normaliser or pre-tokenizer as a flat list of steps (Sequences opened)."""
    if not isinstance(node, dict):
        return []
    inner = node.get("normalizers") or node.get("pretokenizers")
    return [step for child in inner for step in _json_steps(child)] if inner else [node]


def _is_kobert_json(tokenizer_json: dict) -> bool:
    """kobert's own layout: the specials are ids 0-4 and the template starts with [CLS] (not XLNet's `A <sep> <cls>`)."""
    vocab = (tokenizer_json.get("model") or {}).get("vocab") or []
    single = (tokenizer_json.get("post_processor") or {}).get("single") or [{}]
    return ([piece for piece, _ in vocab[: len(SPECIAL_TOKENS)]] == list(SPECIAL_TOKENS)
            and single[0].get("SpecialToken", {}).get("id") == "[CLS]")


def sentencepiece_proto_from_json(tokenizer_json: dict, file: Path):
    """The SentencePiece model a Unigram tokenizer.json was converted from (transformers' XLNetTokenizer
    writes one with no spiece.model beside it in transformers 5): its pieces and scores in their ids,
    the model's charsmap (the `Precompiled` normaliser step) and its dummy-prefix setting.

    XLNet's own steps around the charsmap (NFKD and accent stripping, specials at the end) are not
    KoBERT's and are dropped; the added special tokens among the pieces become control pieces.
    """
    import base64

    from sentencepiece import sentencepiece_model_pb2 as pb

    model = tokenizer_json.get("model") or {}
    charsmaps = [s["precompiled_charsmap"] for s in _json_steps(tokenizer_json.get("normalizer"))
                 if s.get("type") == "Precompiled" and s.get("precompiled_charsmap")]
    vocab = model.get("vocab") or []
    if model.get("type") != "Unigram" or not charsmaps or len(vocab) <= len(SPECIAL_TOKENS):
        kind = model.get("type") or "unknown"
        # transformers 5's XLNetTokenizer(vocab_file=...) ignores the file and saves a one-piece Unigram.
        why = " (what transformers 5's XLNetTokenizer(vocab_file=...) saves)" if kind == "Unigram" else ""
        raise TokenizerFileError(
            f"{file}: a {kind} tokenizer.json with {len(vocab):,} piece(s) and no SentencePiece charsmap{why}, "
            "not a KoBERT tokenizer; pass KoBERT's SentencePiece model with --tokenizer FILE.spiece")
    specials = {t.get("content") for t in tokenizer_json.get("added_tokens") or [] if t.get("special")}
    proto, kinds = pb.ModelProto(), pb.ModelProto.SentencePiece
    for index, (piece, score) in enumerate(vocab):
        kind = kinds.UNKNOWN if index == model.get("unk_id") else kinds.CONTROL if piece in specials else kinds.NORMAL
        proto.pieces.add(piece=piece, score=score, type=kind)
    pieces = [piece for piece, _ in vocab]
    spec = proto.trainer_spec
    spec.model_type, spec.unk_id = pb.TrainerSpec.UNIGRAM, model.get("unk_id") or 0
    spec.bos_id = pieces.index("<s>") if "<s>" in pieces else -1
    spec.eos_id = pieces.index("</s>") if "</s>" in pieces else -1
    metaspace = [s for s in _json_steps(tokenizer_json.get("pre_tokenizer")) if s.get("type") == "Metaspace"]
    proto.normalizer_spec.name = "nmt_nfkc"
    proto.normalizer_spec.precompiled_charsmap = base64.b64decode(charsmaps[0])
    proto.normalizer_spec.add_dummy_prefix = not metaspace or metaspace[0].get("prepend_scheme") != "never"
    return proto


@dataclass(frozen=True)
class TokenizerSource:
    """A recognised tokenizer: its `layout` (see `find_tokenizer_source`) and the `file` it is read from."""

    layout: str
    file: Path

    def sentencepiece_model(self) -> bytes | None:
        """The SentencePiece model behind the ids (the in-graph tf-text tokenizer needs it), if there is one."""
        if self.layout == SENTENCEPIECE:
            return self.file.read_bytes()
        if self.layout == XLNET_JSON:
            return sentencepiece_proto_from_json(_read_json(self.file), self.file).SerializeToString()
        model_file = _find_model_file(self.file.parent)
        return model_file.read_bytes() if model_file else None

    def load(self):
        """The KoBERT tokenizer (a `PreTrainedTokenizerFast`) this source gives."""
        if self.layout == KOBERT_JSON:
            tokenizer = _tokenizer_class().from_pretrained(str(self.file.parent))
            split_words(tokenizer.backend_tokenizer)
            return tokenizer
        if self.layout == XLNET_JSON:
            return _wrap(_backend_from_proto(sentencepiece_proto_from_json(_read_json(self.file), self.file), self.file))
        return _wrap(build_backend_tokenizer(self.file))


KOBERT_JSON, SENTENCEPIECE, XLNET_JSON = "kobert tokenizer.json", "SentencePiece model", "XLNet-style tokenizer.json"


def _read_json(file: Path) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TokenizerFileError(f"{file}: not a readable tokenizer.json ({e})") from None
    if not isinstance(data, dict):
        raise TokenizerFileError(f"{file}: not a tokenizer.json (expected a JSON object)")
    return data


def find_tokenizer_source(path: str | Path) -> TokenizerSource:
    """Which tokenizer `path` (a file, or a checkpoint / tokenizer folder) holds, and how it becomes KoBERT's ids.

    In a folder, the first that is there, in this order:

    | layout | recognised by | KoBERT's ids |
    |---|---|---|
    | kobert tokenizer.json | `tokenizer.json`: ids 0-4 `[UNK] [PAD] [CLS] [SEP] [MASK]`, template `[CLS] $A [SEP]` | as written |
    | SentencePiece model | `tokenizer.model`, `spiece.model` (transformers' XLNetTokenizer, skt/kobert-base-v1), then any `*.model`, `*.spiece` (KoBERT's) | KoBERT's rule (`kobert_vocab`); a model whose pieces 0-4 are the specials keeps its ids |
    | XLNet-style tokenizer.json | any other Unigram `tokenizer.json` with a `Precompiled` charsmap (transformers 5's XLNetTokenizer `save_pretrained`) | its SentencePiece model rebuilt (`sentencepiece_proto_from_json`), then as above |

    Anything else is a TokenizerFileError naming the file. The SentencePiece model goes before a
    foreign tokenizer.json because it is the source of truth: transformers 4's XLNetTokenizerFast writes
    both. `tokenizer_config.json` is not read: the class it names (XLNetTokenizer) puts `<sep> <cls>` at
    the end and uses sentencepiece's ids, neither of which is KoBERT's.
    """
    path = Path(path)
    if path.is_dir():
        json_file = path / "tokenizer.json"
        if json_file.is_file() and _is_kobert_json(_read_json(json_file)):
            return TokenizerSource(KOBERT_JSON, json_file)
        model_file = _find_model_file(path)
        if model_file is not None:
            return TokenizerSource(SENTENCEPIECE, model_file)
        if json_file.is_file():
            sentencepiece_proto_from_json(_read_json(json_file), json_file)  # one clear error if it is not one
            return TokenizerSource(XLNET_JSON, json_file)
        raise TokenizerFileError(f"{path}: directory has neither tokenizer.json nor a SentencePiece .model file")
    if not path.exists():
        raise TokenizerFileError(f"{path}: no such file or directory")
    if path.suffix == ".json":
        if _is_kobert_json(_read_json(path)):
            if path.name != "tokenizer.json":
                raise TokenizerFileError(f"{path}: pass the folder holding it, or name it tokenizer.json")
            return TokenizerSource(KOBERT_JSON, path)
        sentencepiece_proto_from_json(_read_json(path), path)
        return TokenizerSource(XLNET_JSON, path)
    return TokenizerSource(SENTENCEPIECE, path)


def get_tokenizer(path: str | Path | None = None):
    """A `transformers.PreTrainedTokenizerFast` for KoBERT.

    Its `save_pretrained` writes a directory that plain `AutoTokenizer.from_pretrained`
    loads in transformers 4.x and 5.x alike (see `write_portable_tokenizer_class`).

    `path`: a SentencePiece model file (`.model`/`.spiece`), a tokenizer.json, a folder
    holding any tokenizer a KoBERT checkpoint may carry (see `find_tokenizer_source`),
    or None for the default shipped in `kobert/assets/tokenizer/`.
    """
    if path is None:
        path = DEFAULT_TOKENIZER_DIR
        if not (path / "tokenizer.json").is_file():
            raise TokenizerFileError(
                f"{path}: the shipped default tokenizer is missing (no tokenizer.json); "
                "reinstall kobert or pass a SentencePiece model path"
            )
    return find_tokenizer_source(path).load()
