"""Finding the MXNet interpreter and starting kobert's MXNet half in it, isolated from this environment.

Fast: everything but the last two tests runs without MXNet.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from kobert import cli, mxnet_env
from kobert.mxnet_env import (
    ENV_VAR,
    MXNET_REQUIREMENTS,
    MXNET_SIDE_SOURCES,
    MXNetNotFoundError,
    find_mxnet_python,
    mxnet_python,
    mxnet_subprocess_env,
)

MXNET_PYTHON = find_mxnet_python()
needs_mxnet = pytest.mark.skipif(
    MXNET_PYTHON is None, reason="no MXNet interpreter (run `kobert setup-mxnet` or set KOBERT_MXNET_PYTHON)"
)
MAIN_SITE_PACKAGES = sysconfig.get_paths()["purelib"]  # holds numpy 2 (and, installed, kobert)


def fake_python(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    return path


# --- lookup order ------------------------------------------------------------------


@pytest.fixture
def lookup(monkeypatch, tmp_path):
    """A clean slate: no KOBERT_MXNET_PYTHON, an empty XDG_DATA_HOME, a fake checkout, no mxnet here."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    checkout = tmp_path / "checkout"
    monkeypatch.setattr(mxnet_env, "checkout_root", lambda: checkout)
    monkeypatch.setattr(mxnet_env, "this_interpreter_imports_mxnet", lambda: False)
    return tmp_path


def test_env_var_comes_first(lookup, monkeypatch):
    fake_python(lookup / "data" / "kobert" / "mxnet-venv" / "bin" / "python")
    chosen = fake_python(lookup / "chosen" / "python")
    monkeypatch.setenv(ENV_VAR, str(chosen))
    assert mxnet_python() == str(chosen)
    monkeypatch.setenv(ENV_VAR, str(lookup / "missing-python"))
    with pytest.raises(MXNetNotFoundError, match=ENV_VAR):
        mxnet_python()


def test_user_venv_comes_before_the_checkout(lookup):
    in_checkout = fake_python(lookup / "checkout" / ".venv-mxnet" / "bin" / "python")
    assert mxnet_python() == str(in_checkout)
    user = fake_python(lookup / "data" / "kobert" / "mxnet-venv" / "bin" / "python")
    assert mxnet_env.user_venv_dir() == lookup / "data" / "kobert" / "mxnet-venv"
    assert mxnet_python() == str(user)


def test_an_installed_kobert_ignores_any_checkout(lookup, monkeypatch):
    fake_python(lookup / "checkout" / ".venv-mxnet" / "bin" / "python")
    monkeypatch.setattr(mxnet_env, "checkout_root", lambda: None)
    with pytest.raises(MXNetNotFoundError, match="kobert setup-mxnet") as error:
        mxnet_python()
    assert ENV_VAR in str(error.value) and str(mxnet_env.user_venv_dir()) in str(error.value)
    monkeypatch.setattr(mxnet_env, "this_interpreter_imports_mxnet", lambda: True)
    assert mxnet_python() == sys.executable


def test_user_venv_default_is_under_local_share(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert mxnet_env.user_venv_dir() == tmp_path / ".local" / "share" / "kobert" / "mxnet-venv"


def test_checkout_root_is_this_repo_when_editable():
    assert mxnet_env.checkout_root() == Path(mxnet_env.__file__).resolve().parents[1]


# --- the subprocess sees only the MXNet half's sources -----------------------------


def test_subprocess_pythonpath_is_only_the_private_sources():
    hostile = {"PYTHONPATH": os.pathsep.join([MAIN_SITE_PACKAGES, "/elsewhere"]), "PYTHONHOME": sys.prefix,
               "PYTHONUSERBASE": "/home/someone/.local", "KEEP": "kept"}
    env = mxnet_subprocess_env(hostile)
    assert env["KEEP"] == "kept"
    assert "PYTHONHOME" not in env and "PYTHONUSERBASE" not in env and env["PYTHONNOUSERSITE"] == "1"
    entries = env["PYTHONPATH"].split(os.pathsep)
    assert entries == [str(mxnet_env.mxnet_sources_dir())]
    assert not any(part in ("site-packages", "dist-packages") for part in Path(entries[0]).parts)
    copied = sorted(p.relative_to(entries[0]).as_posix() for p in Path(entries[0]).rglob("*") if p.is_file())
    assert copied == sorted(f"kobert/{relative}" for relative in MXNET_SIDE_SOURCES)


def test_module_command_runs_isolated(monkeypatch, tmp_path):
    python = fake_python(tmp_path / "python")
    monkeypatch.setenv(ENV_VAR, str(python))
    command = mxnet_env.mxnet_module_command("kobert.runtimes.mxnet_worker", tmp_path / "a", "b")
    assert command.argv == [str(python), "-s", "-m", "kobert.runtimes.mxnet_worker", str(tmp_path / "a"), "b"]
    # `-m` puts the working directory first on sys.path: it must be the sources, not the caller's directory.
    assert command.cwd == command.env["PYTHONPATH"]


def import_time_imports(source: str) -> set[str]:
    """Modules a source imports when it is imported: not those imported lazily inside functions.

    (kobert/__init__.py's get_tokenizer imports kobert.tokenizer when called; the MXNet half never calls it.)
    """
    modules, pending = set(), list(ast.parse(source).body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            modules.add(node.module)
        pending.extend(ast.iter_child_nodes(node))
    return modules


def module_name(relative: str) -> str:
    return ".".join(["kobert", *Path(relative).with_suffix("").parts]).removesuffix(".__init__")


def test_mxnet_side_sources_import_only_stdlib_numpy_mxnet_and_each_other():
    package = Path(mxnet_env.__file__).parent
    copied = {module_name(relative) for relative in MXNET_SIDE_SOURCES}
    assert {"kobert", "kobert.exporters.mxnet_gluon", "kobert.runtimes.mxnet_worker"} <= copied
    for relative in MXNET_SIDE_SOURCES:
        for module in import_time_imports((package / relative).read_text(encoding="utf-8")):
            top = module.split(".")[0]
            if top == "kobert":
                assert module in copied, f"{relative} imports {module}, which the MXNet interpreter lacks"
            else:
                assert top in sys.stdlib_module_names or top in ("numpy", "mxnet"), f"{relative} imports {module}"


# --- kobert setup-mxnet -----------------------------------------------------------


class RecordedRuns:
    """Stands in for subprocess.run in mxnet_env: records commands, 'creates' the venv's python."""

    def __init__(self, fail_on: str | None = None):
        self.commands, self.fail_on = [], fail_on

    def __call__(self, command, *args, **kwargs):
        self.commands.append(list(command))
        if command[1:3] == ["-m", "venv"]:
            fake_python(Path(command[3]) / "bin" / "python")
        code = 1 if self.fail_on and self.fail_on in command else 0
        return subprocess.CompletedProcess(command, code)


def test_setup_mxnet_creates_the_user_venv(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    runs = RecordedRuns()
    monkeypatch.setattr(mxnet_env.subprocess, "run", runs)
    assert cli.main(["setup-mxnet", "--python", "/opt/python3.11"]) == 0
    venv = tmp_path / "kobert" / "mxnet-venv"
    python = str(venv / "bin" / "python")
    assert runs.commands == [
        ["/opt/python3.11", "-m", "venv", str(venv)],
        [python, "-m", "pip", "install", *MXNET_REQUIREMENTS],
        [python, "-s", "-c", "import mxnet"],
    ]
    assert python in capsys.readouterr().out
    # Run again: the venv exists, so only pip and the check run.
    runs.commands.clear()
    assert cli.main(["setup-mxnet"]) == 0
    assert [c[1:3] for c in runs.commands] == [["-m", "pip"], ["-s", "-c"]]


def test_setup_mxnet_failure_is_one_clear_sentence(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.setattr(mxnet_env.subprocess, "run", RecordedRuns(fail_on="install"))
    assert cli.main(["setup-mxnet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("kobert setup-mxnet: error: could not install mxnet==1.9.1")
    assert len(error.splitlines()) == 1


REPO = Path(__file__).resolve().parent.parent


def test_the_mxnet_pins_are_said_once():
    """`kobert setup-mxnet` installs MXNET_REQUIREMENTS; the extra and ci/setup.sh must say the same."""
    import re
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["mxnet"] == list(MXNET_REQUIREMENTS)
    setup = (REPO / "ci" / "setup.sh").read_text()
    assert re.findall(r"\b(?:mxnet|numpy)==[\d.]+", setup) == [], "ci/setup.sh pins MXNet's versions itself"
    for name in ("MXNET_PIN", "NUMPY_PIN"):
        assert f"from kobert.mxnet_env import {name}" in setup
        assert f'"${name}"' in setup  # and installs what it read
    assert mxnet_env.MXNET_REQUIREMENTS == (mxnet_env.MXNET_PIN, mxnet_env.NUMPY_PIN)


# --- in the real MXNet interpreter ------------------------------------------------

PROBE = """
import json, sys
import numpy
import kobert, kobert.exporters.mxnet_gluon, kobert.runtimes.mxnet_worker
print(json.dumps({"numpy": numpy.__version__, "kobert": kobert.__file__, "path": sys.path,
                  "modules": sorted({name.split(".")[0] for name in sys.modules})}))
"""


@needs_mxnet
def test_mxnet_interpreter_imports_numpy_below_2_and_only_the_private_kobert(tmp_path):
    # A caller whose PYTHONPATH holds the main environment's site-packages (numpy 2) and a checkout.
    hostile = dict(os.environ, PYTHONPATH=os.pathsep.join([MAIN_SITE_PACKAGES, str(mxnet_env.PACKAGE_DIR.parent)]))
    env = mxnet_subprocess_env(hostile)
    proc = subprocess.run([MXNET_PYTHON, "-s", "-c", PROBE], env=env, cwd=env["PYTHONPATH"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    probe = json.loads(proc.stdout.splitlines()[-1])
    assert int(probe["numpy"].split(".")[0]) < 2, probe["numpy"]
    assert Path(probe["kobert"]).parent.parent == mxnet_env.mxnet_sources_dir()
    assert MAIN_SITE_PACKAGES not in probe["path"]
    assert not {"torch", "transformers", "tensorflow", "onnx"} & set(probe["modules"])


def test_sources_are_made_again_if_removed():
    first = mxnet_env.mxnet_sources_dir()
    shutil.rmtree(first)
    again = mxnet_env.mxnet_sources_dir()
    # The same content-addressed cache folder, written again; no per-process copies pile up.
    assert again == first and (again / "kobert" / "runtimes" / "mxnet_worker.py").is_file()
    assert again.parent.name == "kobert" and again.name.startswith("mxnet-sources-")
