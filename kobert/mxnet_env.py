"""Where MXNet lives: the interpreter that can `import mxnet`, and the env to start it with.

MXNet 1.9.1 cannot import with numpy 2, so it usually lives in its own virtual
environment (`bash ci/setup.sh` creates `.venv-mxnet`), beside the main one.
The MXNet exporter and runtime run their MXNet half in that interpreter as a
subprocess; this module finds it. Framework-free: it imports no mxnet.

Lookup order:
1. `KOBERT_MXNET_PYTHON` (a path to a python executable), if set;
2. `<repo root>/.venv-mxnet/bin/python`, if it exists;
3. this interpreter, if it can import mxnet.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ENV_VAR = "KOBERT_MXNET_PYTHON"

# The directory holding the `kobert` package (the repo root for an editable install).
REPO_ROOT = Path(__file__).resolve().parents[1]


class MXNetNotFoundError(RuntimeError):
    """No interpreter that can import mxnet: the message says what to install."""


def mxnet_in_process() -> bool:
    """True if this interpreter has mxnet installed (it may still fail to import with numpy 2)."""
    return importlib.util.find_spec("mxnet") is not None


def mxnet_python() -> str:
    """The path of a python executable that can `import mxnet`."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        if not Path(configured).is_file():
            raise MXNetNotFoundError(f"{ENV_VAR}={configured}: no such file (expected a python executable with mxnet)")
        return configured
    for candidate in (REPO_ROOT / ".venv-mxnet" / "bin" / "python", REPO_ROOT / ".venv-mxnet" / "Scripts" / "python.exe"):
        if candidate.is_file():
            return str(candidate)
    if mxnet_in_process():
        return sys.executable
    raise MXNetNotFoundError(
        "no MXNet interpreter found: run `bash ci/setup.sh` to create .venv-mxnet "
        "(mxnet==1.9.1 with numpy<2), or set "
        f"{ENV_VAR} to a python that has `pip install mxnet==1.9.1 'numpy<2'`"
    )


def find_mxnet_python() -> str | None:
    """Like `mxnet_python`, but None instead of an error (for skipping tests and probing)."""
    try:
        return mxnet_python()
    except MXNetNotFoundError:
        return None


def mxnet_subprocess_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a subprocess of the MXNet interpreter: `kobert` importable from REPO_ROOT.

    kobert is installed only in the main venv; `kobert`, `kobert.config` and
    `kobert.canonical` need only numpy, so putting the repo root on PYTHONPATH
    is enough for the MXNet half.
    """
    env = dict(os.environ if base is None else base)
    paths = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    # The main venv's site-packages must not leak in (numpy 2 would break mxnet).
    env.pop("PYTHONHOME", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Left unset, MXNet ran as slowly as with one OpenMP thread on this 2-vCPU machine;
    # measured: KoBERT-base b32 x 128 takes 3.97 s unset, 2.47 s with OMP_NUM_THREADS=2.
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    return env
