"""Fuzzing: random Unicode text through the tokenizer, every cheap runtime and `kobert run --input`.

Texts mix Korean and other scripts, control and format characters, combining marks, emoji with
ZWJ and modifiers, the tokenizer's own special tokens written as text, unpaired surrogates and very
long runs. Each property either gets the same ids (the tokenizer against sentencepiece) and the same
outputs within each artifact's parity gate (every runtime against the torch reference), or the same
one-line error everywhere. Hypothesis is derandomized with a bounded number of examples, so a CI run
is reproducible and small; each regression found is pinned with `@example`.

Runtimes: torch (the reference), onnx, tf, tflite, tf-text (its own in-graph tokenizer). MXNet, MMS
and the web page are left out: each start costs seconds to minutes (tests/test_mms.py, test_web.py).
"""

import json
import re

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="installed by the test extra (ci/setup.sh: .[all])")
from hypothesis import HealthCheck, example, given, settings, strategies as st  # noqa: E402

from kobert import registry, runtimes  # noqa: E402
from kobert.checkpoint import init_checkpoint, shipped  # noqa: E402
from kobert.cli import main  # noqa: E402
from kobert.config import preset  # noqa: E402
from kobert.export import export  # noqa: E402
from kobert.parity import GATES  # noqa: E402
from kobert.tokenizer import SPECIAL_TOKENS  # noqa: E402
from test_tokenizer import Reference, compare  # noqa: E402

RUNTIME_ARTIFACTS = {"onnx": "onnx", "tf": "tf", "tflite": "tflite", "tf-text": "tf-text"}
FUZZ = settings(derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))

# --- the text families ------------------------------------------------------------------------

MIXED_SCRIPTS = st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"])
KOREAN = st.one_of(st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3),  # syllables
                   st.characters(min_codepoint=0x1100, max_codepoint=0x11FF),  # conjoining jamo
                   st.characters(min_codepoint=0x3131, max_codepoint=0x318E))  # compatibility jamo
CONTROLS = st.characters(codec="utf-8", categories=["Cc", "Cf", "Zl", "Zp", "Co", "Cn"])
MARKS = st.characters(codec="utf-8", categories=["Mn", "Mc", "Me"])
# Emoji with skin tones, ZWJ families, flags, variation selectors, and the joiners alone.
EMOJI = st.sampled_from(["😀", "👍🏽", "👨‍👩‍👧", "🏳️‍🌈", "🇰🇷", "❤️", "\u200d", "\ufe0f", "\U0001f3fb", "🫠"])
SURROGATES = st.characters(categories=["Cs"])
# Letters, precomposed letters and marks of many combining classes, any mark, and characters the charsmap deletes
# or keeps: where NFKC's reordering and composition and sentencepiece's charsmap could part (test_marks_keep_their_order).
MARKED = st.text(st.one_of(st.sampled_from("aeouAEOUạéǘẛᾳ가"), MARKS, st.sampled_from("\x01\x7f\xad "),
                           st.sampled_from("\u0300\u0301\u0302\u0308\u0316\u0323\u0327\u031b\u0334\u0340\u0344\u0345"
                                           "\u05b0\u05bc\u0f71\u0f72\u0f80\u3099\u302e")), max_size=10)
SPECIALS = st.sampled_from([*SPECIAL_TOKENS, "[mask]", "[SEP ]", "[[CLS]]"])


def runs(alphabet, min_size: int = 200, max_size: int = 3000):
    """One character (or cluster) repeated: far past the model's 512 tokens at the top end."""
    return st.builds(lambda piece, n: piece * n, alphabet, st.integers(min_size, max_size))


PIECES = st.one_of(st.text(KOREAN, max_size=12), st.text(MIXED_SCRIPTS, max_size=12), st.text(CONTROLS, max_size=4),
                   st.text(st.one_of(KOREAN, MARKS), max_size=8), EMOJI, SPECIALS, st.just(" "))
VALID_TEXT = st.lists(PIECES, max_size=6).map("".join)
LONG_TEXT = st.one_of(runs(st.one_of(KOREAN, EMOJI, st.just("a "))),
                      st.lists(PIECES, min_size=40, max_size=80).map(" ".join))
ANY_TEXT = st.one_of(VALID_TEXT, VALID_TEXT.flatmap(lambda t: st.builds(
    lambda at, s: t[:at] + s + t[at:], st.integers(0, len(t)), SURROGATES)))


# --- the tokenizer against sentencepiece --------------------------------------------------------


class SpecialsAwareReference:
    """test_tokenizer's sentencepiece Reference, with the special tokens read in the text as `tokenizers`
    reads them (matched in the raw text; the text between them tokenized on its own)."""

    pattern = re.compile("(" + "|".join(map(re.escape, SPECIAL_TOKENS)) + ")")

    def __init__(self, reference: Reference):
        self.reference = reference

    def ids(self, text: str) -> list[int]:
        found = []
        for part in self.pattern.split(text):
            found += [SPECIAL_TOKENS.index(part)] if part in SPECIAL_TOKENS else self.reference.ids(part)
        return found


@pytest.fixture(scope="module")
def shipped_tokenizer():
    from kobert.tokenizer import get_tokenizer

    model_file = shipped("tokenizer") / "tokenizer.model"
    return get_tokenizer(shipped("tokenizer")), SpecialsAwareReference(Reference(model_file))


@settings(FUZZ, max_examples=60)
@given(text=st.one_of(VALID_TEXT, LONG_TEXT))
@example(text="가[MASK]나 a\x00b[SEP]\x00")
def test_tokenizer_ids_equal_sentencepiece(shipped_tokenizer, text):
    tokenizer, reference = shipped_tokenizer
    exact, ties, other = compare(tokenizer, reference, [text])
    assert other == []  # a reordering of tied pieces is the known residue (tests/test_tokenizer.py)


@pytest.mark.parametrize("text", [
    "\u0300\u0301\u0316",  # found by fuzzing: NFKC put U+0316 (class 220) before U+0300/U+0301 (230)
    "a\u0302\u0323 \u1ea1\u0302 a\u0316\u0301",  # NFKC composes across a mark or a precomposed letter
    "e\x01\u0301 \u0301\x01\u0316",  # ... and NFC across a control the charsmap deletes
])
def test_marks_keep_their_order(shipped_tokenizer, text):
    """sentencepiece composes a mark only inside a charsmap key and never reorders marks."""
    tokenizer, reference = shipped_tokenizer
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == reference.ids(text)


@settings(FUZZ, max_examples=300)
@given(text=MARKED)
def test_marked_letters_equal_sentencepiece(shipped_tokenizer, text):
    tokenizer, reference = shipped_tokenizer
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == reference.ids(text)


# --- every runtime against the torch reference -----------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_export(tmp_path_factory):
    """A tiny classifier exported to the cheap runtimes' artifacts, each opened once."""
    root = tmp_path_factory.mktemp("fuzz")
    checkpoint = init_checkpoint(preset("tiny").with_head("sequence_classification", 2), root / "ck", seed=11)
    result = export(checkpoint, root / "export", tokenizer=shipped("tokenizer"),
                    targets=list(RUNTIME_ARTIFACTS.values()))
    opened = {"torch": runtimes.load(result.out, runtime="torch")}
    opened.update({runtime: runtimes.load(result.out, runtime=runtime, artifact=artifact)
                   for runtime, artifact in RUNTIME_ARTIFACTS.items()})
    yield result.out, opened
    for runtime in opened.values():
        runtime.close()


def outcome(call):
    """The call's result, or its one-line error; any other exception fails the test with its traceback."""
    try:
        return call()
    except ValueError as e:
        assert "\n" not in str(e), str(e)
        return f"ValueError: {e}"


def same_ids_but_ties(got: dict, want: dict) -> bool:
    """Row by row the same ids, or the same ids reordered (tied pieces: tests/test_tokenizer.py)."""
    if got["input_ids"].shape != want["input_ids"].shape:
        return False
    return all(list(a) == list(b) or sorted(a) == sorted(b) for a, b in zip(got["input_ids"], want["input_ids"]))


@settings(FUZZ, max_examples=25)
@given(texts=st.lists(st.one_of(ANY_TEXT, LONG_TEXT), min_size=1, max_size=4))
@example(texts=["가[MASK]나", "x[PAD] [SEP] y"])  # tf-text read special tokens in a text as plain text
@example(texts=["a\x00b[SEP]\x00"])
@example(texts=["좋다", "bad \ud800 text"])
def test_every_runtime_gives_the_same_logits_or_the_same_error(fuzz_export, texts):
    _, opened = fuzz_export
    reference = opened["torch"]
    want = outcome(lambda: reference.logits(texts))
    want_ids = outcome(lambda: reference.encode(texts))
    for runtime, artifact in RUNTIME_ARTIFACTS.items():
        rt = opened[runtime]
        got = outcome(lambda: rt.logits(texts))
        if isinstance(want, str) or isinstance(got, str):
            assert got == want, f"{runtime}: {got!r} != torch's {want!r}"
            continue
        ids = rt.encode(texts)
        assert same_ids_but_ties(ids, want_ids), f"{runtime}: ids {ids['input_ids']} != {want_ids['input_ids']}"
        # Outputs judged on the runtime's own ids (the same as torch's unless tied pieces were reordered).
        expected = reference.run(**ids)["logits"]
        gate = GATES[registry.TARGETS[artifact].gate].max_abs
        assert np.abs(got - expected).max() <= gate, f"{runtime}: logits differ from torch's by more than {gate}"


# --- kobert run --input ----------------------------------------------------------------------------


@settings(FUZZ, max_examples=5)
@given(lines=st.lists(ANY_TEXT.filter(lambda t: "\n" not in t and "\r" not in t), min_size=1, max_size=12))
@example(lines=["좋다", "[CLS] 별로 [SEP]", "bad \udc80", ""])
def test_kobert_run_input_gives_one_row_per_line(fuzz_export, tmp_path_factory, capsys, lines):
    out, opened = fuzz_export
    path = tmp_path_factory.mktemp("lines") / "lines.txt"
    path.write_bytes(b"".join(line.encode("utf-8", "surrogatepass") + b"\n" for line in lines))
    capsys.readouterr()
    assert main(["--quiet", "run", str(out), "--runtime", "onnx", "--output", "logits", "--on-error", "skip",
                 "--input", str(path)]) == 0
    rows = [json.loads(row) for row in capsys.readouterr().out.splitlines()]
    assert len(rows) == len(lines)
    for number, (line, row) in enumerate(zip(lines, rows), 1):
        valid = outcome(lambda: opened["onnx"].logits([line]))
        if isinstance(valid, str):  # a surrogate: its UTF-8 bytes are not valid UTF-8
            assert row["line"] == number and row["error"].startswith(f"{path}:{number}: not valid UTF-8"), row
            continue
        assert row["text"] == line
        assert np.abs(np.asarray(row["logits"]) - valid[0]).max() <= GATES["fp32"].max_abs
