"""`pip install kobert[...]` as a user does it: the wheel with its *declared* dependencies, in a clean venv.

No --no-deps, no --system-site-packages, no .pth into this environment: what the wheel's metadata
does not declare is not there. One thing is chosen for pip: torch's build. PyPI's default Linux torch
pulls CUDA (gigabytes); a constraint names this environment's torch (`2.13.0+cpu` here, which pip
finds in the machine's wheel directory, pip config `find-links`), as a user picks the CPU build with
`--index-url https://download.pytorch.org/whl/cpu` (docs/install.md). The constraint only picks a
build: `kobert[onnx]` must still declare torch for pip to install it. `--no-compile` skips writing
.pyc files for torch's thousands of modules (measured: most of an install's CPU time otherwise).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_installed_wheel import build_wheel  # the same wheel build (tests/ is on pytest's pythonpath)

torch = pytest.importorskip("torch")

REPO_ROOT = Path(__file__).resolve().parents[1]
TEXT = "정말 재밌어요"
INSTALL_TIMEOUT_S = 1200


def checked(command: list, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                          **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, command))} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc


def clean_env(tmp: Path) -> dict[str, str]:
    """No PYTHONPATH (pytest's names the checkout), an empty per-user data dir, no MXNet python."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "KOBERT_MXNET_PYTHON")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["XDG_DATA_HOME"] = str(tmp / "xdg")
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def install(venv: Path, requirement: str) -> None:
    """`pip install requirement` into `venv` (created if missing), dependencies and all, torch's build chosen."""
    if not (venv / "bin" / "python").is_file():
        checked([sys.executable, "-m", "venv", venv])
    constraints = venv / "torch-build.txt"
    constraints.write_text(f"torch=={torch.__version__}\n")
    checked([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-compile", "-c", constraints, requirement],
            env=clean_env(venv))


def kobert(venv: Path, *args, cwd: Path) -> subprocess.CompletedProcess:
    return checked([venv / "bin" / "kobert", "--quiet", *args], cwd=cwd, env=clean_env(cwd))


def test_core_install_tokenizes_like_sentencepiece(wheel, tmp_path):
    import sentencepiece as spm

    venv = tmp_path / "venv"
    install(venv, str(wheel))
    proc = kobert(venv, "tokenize", TEXT, cwd=tmp_path)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    # The independent reference: sentencepiece on the shipped model, KoBERT's ids by its rule (5 specials,
    # then the normal pieces in code-point order), [CLS]=2 ... [SEP]=3 around them.
    sp = spm.SentencePieceProcessor(model_file=str(REPO_ROOT / "kobert" / "assets" / "tokenizer" / "tokenizer.model"))
    normal = sorted(sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not (sp.is_unknown(i) or sp.is_control(i)))
    pieces = sp.encode(TEXT, out_type=str)
    assert got["tokens"] == ["[CLS]", *pieces, "[SEP]"]
    assert got["input_ids"] == [2, *(normal.index(p) + 5 for p in pieces), 3]
    # and nothing the core does not declare came along
    missing = subprocess.run([venv / "bin" / "python", "-c", "import torch"], capture_output=True, env=clean_env(tmp_path))
    assert missing.returncode != 0


@pytest.fixture(scope="module")
def framework_venv(wheel, tmp_path_factory) -> dict[str, Path]:
    """One venv that gets `kobert[onnx]`, then (the slow test) `kobert[tf]` added: torch is unpacked once."""
    tmp = tmp_path_factory.mktemp("install")
    work = tmp / "work"  # outside the repo: nothing may find the checkout
    work.mkdir()
    install(tmp / "venv", f"{wheel}[onnx]")
    tokenizer = REPO_ROOT / "kobert" / "assets" / "tokenizer"
    kobert(tmp / "venv", "init", "--preset", "tiny", "--num-labels", "2", "--out", "CK", cwd=work)
    return {"venv": tmp / "venv", "work": work, "wheel": wheel, "tokenizer": tokenizer}


def run_logits(setup: dict, export: str, runtime: str) -> np.ndarray:
    proc = kobert(setup["venv"], "run", export, "--runtime", runtime, "--output", "logits", TEXT, cwd=setup["work"])
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row["text"] == TEXT
    return np.array(row["logits"], dtype=np.float64)


def reference_logits(setup: dict, transformers_reference) -> np.ndarray:
    """This environment's transformers on the same checkpoint and the same ids (the export's own tokenizer)."""
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(setup["tokenizer"] / "tokenizer.json")).encode(TEXT).ids
    inputs = {"input_ids": np.array([ids]), "attention_mask": np.ones((1, len(ids))),
              "token_type_ids": np.zeros((1, len(ids)))}
    return transformers_reference.checkpoint_outputs(setup["work"] / "CK", inputs)["logits"][0]


def test_onnx_extra_exports_and_runs(framework_venv, transformers_reference):
    kobert(framework_venv["venv"], "export", "CK", "--to", "onnx", "--tokenizer", framework_venv["tokenizer"],
           "--out", "EXP-onnx", cwd=framework_venv["work"])
    got = run_logits(framework_venv, "EXP-onnx", "onnx")
    np.testing.assert_allclose(got, reference_logits(framework_venv, transformers_reference), rtol=0, atol=1e-4)


@pytest.mark.slow
def test_tf_extra_exports_and_runs(framework_venv, transformers_reference):
    install(framework_venv["venv"], f"{framework_venv['wheel']}[tf]")
    kobert(framework_venv["venv"], "export", "CK", "--to", "tf", "--tokenizer", framework_venv["tokenizer"],
           "--out", "EXP-tf", cwd=framework_venv["work"])
    got = run_logits(framework_venv, "EXP-tf", "tf")
    np.testing.assert_allclose(got, reference_logits(framework_venv, transformers_reference), rtol=0, atol=1e-4)
