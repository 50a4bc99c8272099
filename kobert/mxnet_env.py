"""Where MXNet lives: the interpreter that can `import mxnet`, and how to start kobert's MXNet half in it.

MXNet 1.9.1 cannot import with numpy 2, so it lives in its own virtual
environment, beside the one kobert is installed in. The MXNet exporter and
runtime run their MXNet half (`kobert.exporters.mxnet_gluon`,
`kobert.runtimes.mxnet_worker`) in that interpreter as a subprocess; this module
finds the interpreter and builds the subprocess. Framework-free: it imports no mxnet.

Interpreter lookup order (`mxnet_python`):
1. `KOBERT_MXNET_PYTHON` (a path to a python executable), if set;
2. the per-user venv `${XDG_DATA_HOME:-~/.local/share}/kobert/mxnet-venv`
   (`kobert setup-mxnet` creates it);
3. in a source checkout only: `<repo>/.venv-mxnet` (`bash ci/setup.sh` creates it);
4. this interpreter, if it can import mxnet.

The subprocess never sees the environment kobert is installed in: that is
usually a site-packages holding numpy 2, where mxnet fails with `np.PZERO was
removed`. Its PYTHONPATH is a private copy of just the pure-python kobert
modules the MXNet half imports (`MXNET_SIDE_SOURCES`, which need only the
standard library, numpy and mxnet), and it runs with `-s`, without PYTHONHOME,
from that directory (`-m` puts the working directory first on sys.path).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "KOBERT_MXNET_PYTHON"
# The MXNet pins, said once: `kobert setup-mxnet` installs them, the `mxnet` extra in pyproject.toml
# lists them and ci/setup.sh reads them from here (tests/test_mxnet_env.py checks both agree).
# MXNet 1.9.1 does not import with numpy 2.
MXNET_PIN = "mxnet==1.9.1"
NUMPY_PIN = "numpy==1.23.5"
MXNET_REQUIREMENTS = (MXNET_PIN, NUMPY_PIN)
# Every child process ends within a limit, killed past it: the `import mxnet` probe, and each
# `kobert setup-mxnet` step (a pip install of mxnet downloads ~50 MB).
PROBE_TIMEOUT_S = 120
SETUP_STEP_TIMEOUT_S = 1800

PACKAGE_DIR = Path(__file__).resolve().parent

# Everything the MXNet interpreter imports from kobert, relative to the package
# directory: the two entry modules, their imports, and the package __init__s on the way.
MXNET_SIDE_SOURCES = (
    "__init__.py",
    "config.py",
    "canonical.py",
    "exporters/__init__.py",
    "exporters/mxnet_gluon.py",
    "runtimes/__init__.py",
    "runtimes/mxnet_worker.py",
)

# Environment variables that would point the MXNet interpreter at another installation.
_LEAKY_VARIABLES = ("PYTHONHOME", "PYTHONUSERBASE", "PYTHONSTARTUP", "PYTHONEXECUTABLE")


class MXNetNotFoundError(RuntimeError):
    """No interpreter that can import mxnet: the message says what to do."""


class MXNetSetupError(RuntimeError):
    """`kobert setup-mxnet` could not create the per-user MXNet venv."""


# --- finding the interpreter ---------------------------------------------------


def user_venv_dir() -> Path:
    """The per-user MXNet venv: `${XDG_DATA_HOME:-~/.local/share}/kobert/mxnet-venv`."""
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "kobert" / "mxnet-venv"


def venv_python(venv: Path) -> Path:
    return venv / "Scripts" / "python.exe" if os.name == "nt" else venv / "bin" / "python"


def checkout_root() -> Path | None:
    """The repository root when kobert runs from a source checkout (editable install), else None."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() else None


def mxnet_in_process() -> bool:
    """True if this interpreter has mxnet installed (it may still fail to import with numpy 2)."""
    return importlib.util.find_spec("mxnet") is not None


@functools.cache
def this_interpreter_imports_mxnet() -> bool:
    """Whether this interpreter, started as the MXNet half will be, imports mxnet (checked in a subprocess)."""
    if not mxnet_in_process():
        return False
    command = MXNetCommand.build(sys.executable, "-c", "import mxnet")
    try:
        return subprocess.run(command.argv, env=command.env, cwd=command.cwd, capture_output=True,
                              timeout=PROBE_TIMEOUT_S).returncode == 0
    except subprocess.TimeoutExpired:  # killed: an interpreter that hangs on `import mxnet` cannot serve it
        return False


def mxnet_python() -> str:
    """The path of a python executable that can `import mxnet` (see the lookup order above)."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        if not Path(configured).is_file():
            raise MXNetNotFoundError(
                f"{ENV_VAR}={configured} is not a file: point it at a python that has {' and '.join(MXNET_REQUIREMENTS)}."
            )
        return configured
    candidates = [venv_python(user_venv_dir())]
    root = checkout_root()
    if root is not None:
        candidates.append(venv_python(root / ".venv-mxnet"))
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    if this_interpreter_imports_mxnet():
        return sys.executable
    raise MXNetNotFoundError(
        f"no MXNet interpreter found: run `kobert setup-mxnet` to create {user_venv_dir()}, "
        f"or set {ENV_VAR} to a python that has {' and '.join(MXNET_REQUIREMENTS)}."
    )


def find_mxnet_python() -> str | None:
    """Like `mxnet_python`, but None instead of an error (for skipping tests and probing)."""
    try:
        return mxnet_python()
    except MXNetNotFoundError:
        return None


# --- the subprocess: a clean path holding only the MXNet half's sources -----------

_sources_lock = threading.Lock()
_sources_dir: Path | None = None


def _copy_mxnet_side_sources(destination: Path) -> None:
    for relative in MXNET_SIDE_SOURCES:
        target = destination / "kobert" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PACKAGE_DIR / relative, target)


def mxnet_sources_dir() -> Path:
    """A private directory holding `kobert/` with only `MXNET_SIDE_SOURCES`.

    A copy, not the installed package's parent: for an installed kobert that
    parent is the main environment's site-packages, numpy 2 included. It lives in
    the user's cache under the hash of its contents, written once (atomically, by
    rename) and shared by every process of this kobert version, so a killed
    process leaves nothing behind.
    """
    global _sources_dir
    with _sources_lock:
        # Made again if something (a cache cleaner, in a long-lived process) removed it.
        if _sources_dir is None or not (_sources_dir / "kobert" / "__init__.py").is_file():
            digest = hashlib.sha256()
            for relative in MXNET_SIDE_SOURCES:
                digest.update(relative.encode() + b"\0" + (PACKAGE_DIR / relative).read_bytes())
            cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kobert"
            directory = cache / f"mxnet-sources-{digest.hexdigest()[:16]}"
            if not (directory / "kobert" / "__init__.py").is_file():
                cache.mkdir(parents=True, exist_ok=True)
                staging = Path(tempfile.mkdtemp(prefix=".mxnet-sources-", dir=cache))
                _copy_mxnet_side_sources(staging)
                try:
                    staging.rename(directory)
                except OSError:  # another process won the race: its copy is identical
                    shutil.rmtree(staging, ignore_errors=True)
            _sources_dir = directory
        return _sources_dir


def mxnet_subprocess_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the MXNet interpreter: PYTHONPATH is only `mxnet_sources_dir()`."""
    env = dict(os.environ if base is None else base)
    # Any inherited PYTHONPATH (a checkout, another site-packages) could shadow the MXNet venv's numpy.
    env["PYTHONPATH"] = str(mxnet_sources_dir())
    for name in _LEAKY_VARIABLES:
        env.pop(name, None)
    env["PYTHONNOUSERSITE"] = "1"  # as -s, for any python the MXNet half itself starts
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Left unset, MXNet ran as slowly as with one OpenMP thread on this 2-vCPU machine;
    # measured: KoBERT-base b32 x 128 takes 3.97 s unset, 2.47 s with OMP_NUM_THREADS=2.
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    return env


@dataclass(frozen=True)
class MXNetCommand:
    """One run of the MXNet interpreter: `subprocess.run(c.argv, env=c.env, cwd=c.cwd)`.

    Paths in the arguments must be absolute: the working directory is the sources directory.
    """

    argv: list[str]
    env: dict[str, str]
    cwd: str

    @classmethod
    def build(cls, python: str, *args: str) -> "MXNetCommand":
        sources = str(mxnet_sources_dir())
        return cls(argv=[python, "-s", *args], env=mxnet_subprocess_env(), cwd=sources)

    def run(self, timeout_s: float, what: str, error: type[Exception] = RuntimeError) -> subprocess.CompletedProcess:
        """Run it, output captured as text; past `timeout_s` the child is killed and `error` names it."""
        try:
            return subprocess.run(self.argv, env=self.env, cwd=self.cwd, capture_output=True, text=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise error(f"{what} did not finish within {timeout_s} s and was killed "
                        f"({' '.join(self.argv[:4])})") from None


def mxnet_module_command(module: str, *args: str | os.PathLike) -> MXNetCommand:
    """`<mxnet python> -s -m <module> <args>`, for a module listed in `MXNET_SIDE_SOURCES`."""
    return MXNetCommand.build(mxnet_python(), "-m", module, *map(str, args))


# --- kobert setup-mxnet ----------------------------------------------------------


def _run_setup_step(command: list[str], what: str) -> None:
    # pip's own output goes to the terminal: an install of mxnet takes a while.
    try:
        code = subprocess.run(command, timeout=SETUP_STEP_TIMEOUT_S).returncode
    except subprocess.TimeoutExpired:
        raise MXNetSetupError(f"could not {what}: `{' '.join(command)}` did not finish within "
                              f"{SETUP_STEP_TIMEOUT_S} s and was killed.") from None
    except OSError as e:
        raise MXNetSetupError(f"could not {what} ({command[0]}: {e.strerror}); pass --python with a working python 3.") from None
    if code != 0:
        raise MXNetSetupError(f"could not {what}: `{' '.join(command)}` exited with {code} (its output is above).")


def setup_user_venv(base_python: str | None = None, venv: Path | None = None) -> Path:
    """Create (or complete) the per-user MXNet venv and return its python."""
    venv = Path(venv) if venv is not None else user_venv_dir()
    base_python = base_python or sys.executable
    python = venv_python(venv)
    if not python.is_file():
        _run_setup_step([base_python, "-m", "venv", str(venv)], f"create a venv at {venv}")
    _run_setup_step([str(python), "-m", "pip", "install", *MXNET_REQUIREMENTS], f"install {' '.join(MXNET_REQUIREMENTS)} into {venv}")
    _run_setup_step([str(python), "-s", "-c", "import mxnet"], f"import mxnet in {venv}")
    return python
