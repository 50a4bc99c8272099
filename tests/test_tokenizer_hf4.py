"""Every tokenizer kobert writes loads with plain `AutoTokenizer` in transformers 4.x and 5.x.

transformers 4.x (which Optimum still requires) runs in `.venv-hf4` (ci/setup.sh), in a
subprocess with a clean environment, so it sees only transformers, never kobert.
transformers 5.x is this venv.  Both must give kobert's own encodings.
"""

import inspect
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import generate_korean_documents

HF4_PYTHON = Path(__file__).resolve().parents[1] / ".venv-hf4" / "bin" / "python"
TEXTS = [
    "한국어 모델을 공유합니다.",
    "보고 울엇닼ㅋㅠㅠ",
    "가🈻나 ～ ｶﾞ Ầ",
    "BERT는 Korean을 잘 안다 😀",
    "",
] + generate_korean_documents(40, seed=11)
PAIRS = list(zip(TEXTS[:20], TEXTS[20:40]))


def encodings(tok, texts, pairs):
    """What both transformers versions must agree on (also run, as source, in the transformers 4 venv)."""
    firsts, seconds = [a for a, _ in pairs], [b for _, b in pairs]
    return {
        "class": type(tok).__name__,
        "single": tok(texts)["input_ids"],
        "word_ids": [tok(text).word_ids() for text in texts],  # whitespace words (Metaspace split=True)
        "pair": {key: list(value) for key, value in tok(firsts, seconds).items()},
        "truncated": tok(texts, truncation=True, max_length=8)["input_ids"],
        "pair_truncated": dict(tok(firsts, seconds, truncation="longest_first", max_length=12)),
        "padded": dict(tok(texts[:5], padding=True)),
        "model_max_length": tok.model_max_length,
        "pad_token_id": tok.pad_token_id,
    }


HF4_SCRIPT = inspect.getsource(encodings) + """
import json, sys
import transformers
from transformers import AutoTokenizer

job = json.load(sys.stdin)
out = {d: encodings(AutoTokenizer.from_pretrained(d), job["texts"], job["pairs"]) for d in job["dirs"]}
print(json.dumps({"version": transformers.__version__, "encodings": out}))
"""


@pytest.fixture(scope="module")
def saved_dirs(tmp_path_factory, small_tokenizer_dir):
    """name -> (directory, kobert's tokenizer for it), one per way kobert writes or ships a tokenizer."""
    from kobert.tokenizer import DEFAULT_TOKENIZER_DIR, get_tokenizer

    root = tmp_path_factory.mktemp("saved")
    shipped_model = DEFAULT_TOKENIZER_DIR.parent / "model"
    built = get_tokenizer(DEFAULT_TOKENIZER_DIR / "tokenizer.model")
    built.save_pretrained(root / "export")  # what kobert.export writes
    reloaded = get_tokenizer(root / "export")
    reloaded.save_pretrained(root / "reloaded")  # pretraining / fine-tuning: load a directory, save it again
    return {
        "export": (root / "export", built),
        "reloaded": (root / "reloaded", reloaded),
        # kobert tokenizer train
        "train": (small_tokenizer_dir, get_tokenizer(small_tokenizer_dir / "tokenizer.model")),
        "shipped_tokenizer": (DEFAULT_TOKENIZER_DIR, get_tokenizer(DEFAULT_TOKENIZER_DIR)),
        "shipped_model": (shipped_model, get_tokenizer(shipped_model)),
    }


def _kobert_encodings(tok):
    want = encodings(tok, TEXTS, PAIRS)
    want.pop("class")
    return want


def test_saved_config_names_a_class_both_versions_know(saved_dirs):
    from kobert.tokenizer import PORTABLE_TOKENIZER_CLASS

    for name, (directory, _) in saved_dirs.items():
        config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
        assert config["tokenizer_class"] == PORTABLE_TOKENIZER_CLASS == "PreTrainedTokenizerFast", name


def test_transformers5_autotokenizer_matches_kobert(saved_dirs):
    import transformers
    from transformers import AutoTokenizer

    assert transformers.__version__.startswith("5.")
    for name, (directory, tok) in saved_dirs.items():
        got = encodings(AutoTokenizer.from_pretrained(directory), TEXTS, PAIRS)
        assert got.pop("class") in ("TokenizersBackend", "PreTrainedTokenizerFast"), name
        assert got == _kobert_encodings(tok), name


def test_transformers4_autotokenizer_matches_kobert(saved_dirs, tmp_path):
    if not HF4_PYTHON.is_file():
        pytest.skip(f"{HF4_PYTHON}: no transformers 4 venv (ci/setup.sh creates .venv-hf4)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    job = {"dirs": [str(d) for d, _ in saved_dirs.values()], "texts": TEXTS, "pairs": PAIRS}
    run = subprocess.run(
        [str(HF4_PYTHON), "-c", HF4_SCRIPT],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # nothing importable from the repo
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert result["version"].startswith("4.")
    for name, (directory, tok) in saved_dirs.items():
        got = result["encodings"][str(directory)]
        assert got.pop("class") == "PreTrainedTokenizerFast", name
        assert got == json.loads(json.dumps(_kobert_encodings(tok))), name
