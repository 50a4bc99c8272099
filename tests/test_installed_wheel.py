"""kobert installed from a wheel (not editable) exports to MXNet and runs it, from a directory outside the repo.

An installed kobert sits in a site-packages that also holds numpy 2; the MXNet
interpreter must never see that directory (it failed with `np.PZERO was
removed`). The fresh venv holds the wheel and numpy; the heavy third-party
packages (torch, transformers, ...) come from this environment's site-packages
through a .pth line, which is processed for the fresh venv only and adds no
editable kobert (a .pth inside a directory named by a .pth is not read).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from kobert.mxnet_env import ENV_VAR, find_mxnet_python

MXNET_PYTHON = find_mxnet_python()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(MXNET_PYTHON is None, reason="no MXNet venv (run `kobert setup-mxnet` or set KOBERT_MXNET_PYTHON)"),
]
REPO_ROOT = Path(__file__).resolve().parents[1]
TEXT = "정말 재밌어요"


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600, **kwargs)


def checked(command: list, **kwargs) -> subprocess.CompletedProcess:
    proc = run(command, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, command))} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc


def build_wheel(tmp: Path) -> Path:
    # From a copy: an in-tree build reuses build/lib, which keeps modules deleted since.
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "kobert", source / "kobert", ignore=shutil.ignore_patterns("__pycache__"))
    checked([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", source])
    (wheel,) = (tmp / "dist").glob("kobert-*.whl")
    return wheel


def fresh_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    checked([sys.executable, "-m", "venv", venv])
    python = venv / "bin" / "python"
    # numpy 2 beside kobert, as a real install has it: what the MXNet interpreter must not see.
    checked([python, "-m", "pip", "install", "-q", "--no-deps", wheel, f"numpy=={np.__version__}"])
    site = Path(checked([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    main_site = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz-main-venv-third-party.pth").write_text("\n".join(sorted(main_site)) + "\n")
    return venv


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """No PYTHONPATH (pytest's may name the checkout), an empty per-user data dir."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", ENV_VAR)}
    env["XDG_DATA_HOME"] = str(tmp / "xdg")
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("installed-wheel")
    venv = fresh_venv(tmp, build_wheel(tmp))
    workdir = tmp / "work"  # outside the repo: nothing may find the checkout
    workdir.mkdir()
    where = checked([venv / "bin" / "python", "-c", "import kobert, numpy; print(kobert.__file__); print(numpy.__version__)"],
                    cwd=workdir, env=clean_env(tmp)).stdout.split()
    assert Path(where[0]).is_relative_to(venv), f"kobert imported from {where[0]}, not the wheel"
    assert int(where[1].split(".")[0]) >= 2
    return {"tmp": tmp, "venv": venv, "kobert": venv / "bin" / "kobert", "workdir": workdir,
            "tokenizer": Path(where[0]).parent / "assets" / "tokenizer"}


def logits(installed, runtime: str, env: dict[str, str]) -> np.ndarray:
    proc = checked([installed["kobert"], "run", "EXP", "--runtime", runtime, "--output", "logits", TEXT],
                   cwd=installed["workdir"], env=env)
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row["text"] == TEXT
    return np.array(row["logits"], dtype=np.float64)


@pytest.fixture(scope="module")
def exported(installed):
    env = clean_env(installed["tmp"], **{ENV_VAR: MXNET_PYTHON})
    kobert, cwd = installed["kobert"], installed["workdir"]
    checked([kobert, "init", "--preset", "tiny", "--num-labels", "2", "--out", "CK"], cwd=cwd, env=env)
    # The case that failed from an installed kobert with `np.PZERO was removed`.
    checked([kobert, "export", "CK", "--to", "mxnet", "--tokenizer", installed["tokenizer"], "--out", "EXP"],
            cwd=cwd, env=env)
    return {"torch": logits(installed, "torch", env)}


def test_installed_kobert_exports_and_runs_mxnet(installed, exported):
    env = clean_env(installed["tmp"], **{ENV_VAR: MXNET_PYTHON})
    got = logits(installed, "mxnet", env)
    assert got.shape == (2,)
    np.testing.assert_allclose(got, exported["torch"], rtol=0, atol=1e-4)


def test_installed_kobert_finds_the_venv_setup_mxnet_makes(installed, exported):
    env = clean_env(installed["tmp"])
    # Installed, no KOBERT_MXNET_PYTHON, no per-user venv: the checkout's .venv-mxnet is not used.
    missing = run([installed["kobert"], "run", "EXP", "--runtime", "mxnet", "--output", "logits", TEXT],
                  cwd=installed["workdir"], env=env)
    assert missing.returncode == 2, missing.stderr[-3000:]
    assert "run `kobert setup-mxnet`" in missing.stderr
    proc = checked([installed["kobert"], "setup-mxnet"], cwd=installed["workdir"], env=env)
    python = installed["tmp"] / "xdg" / "kobert" / "mxnet-venv" / "bin" / "python"
    assert str(python) in proc.stdout
    np.testing.assert_allclose(logits(installed, "mxnet", env), exported["torch"], rtol=0, atol=1e-4)
