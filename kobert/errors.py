"""What the CLI says when a command fails: one line, and the full cause in a log file that line names.

The line is the error's first line (a subprocess failure's first line says what ran and how it ended).
The log file holds the command line, the whole message (the MXNet, tf2onnx or model-archiver stderr
it carries) and the traceback with its chained causes. It is written to `$KOBERT_LOG_DIR`, else
`<temp dir>/kobert-logs/` (`/tmp/kobert-logs` on Linux), only when there is more to say than the line:
a multi-line message, an explicit cause (`raise ... from`), or an error kobert did not raise on
purpose. `--verbose` prints the traceback too. A framework that is not installed becomes the pip extra that brings it.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from importlib.metadata import PackageNotFoundError
from pathlib import Path

# The pip extra (pyproject.toml) that installs each framework module kobert imports; tests/test_errors.py
# checks each extra exists and declares the module's distribution.
FRAMEWORK_EXTRAS = {
    "torch": "torch", "onnx": "onnx", "onnxruntime": "onnx", "onnxscript": "onnx",
    "tensorflow": "tf", "tf2onnx": "tf", "ai_edge_litert": "tflite", "tensorflow_text": "tf-text",
    "kiwipiepy": "train", "matplotlib": "train", "openvino": "openvino", "pyspark": "spark", "keras_hub": "keras",
}


def missing_extra(error: BaseException) -> tuple[str, str] | None:
    """(module, extra) when `error` is a framework that is not installed; else None."""
    if not isinstance(error, ImportError) or not error.name:
        return None
    # PackageNotFoundError (importlib.metadata.version of a missing distribution) names the distribution.
    module = error.name if isinstance(error, PackageNotFoundError) else error.name.split(".")[0]
    extra = FRAMEWORK_EXTRAS.get(module.replace("-", "_"))
    return (module, extra) if extra else None


def log_dir() -> Path:
    return Path(os.environ.get("KOBERT_LOG_DIR") or Path(tempfile.gettempdir()) / "kobert-logs")


def write_log(command: str, argv: list[str], error: BaseException) -> Path:
    """The full cause of a failed `kobert <command>`, in a new file under `log_dir()`."""
    directory = log_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path.write_text(f"kobert {' '.join(argv)}\n\n" + "".join(traceback.format_exception(error)), encoding="utf-8")
    return path


def summary(error: BaseException, expected: tuple[type[BaseException], ...]) -> tuple[str, bool]:
    """(the one line for the user, whether the log has more than it)."""
    missing = missing_extra(error)
    if missing:
        module, extra = missing
        return f"{module} is not installed: this needs the '{extra}' extra: pip install 'kobert[{extra}]'", True
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else type(error).__name__
    if not isinstance(error, expected):
        return f"{type(error).__name__}: {first}", True
    # `raise ... from cause` names a cause worth reading; an error raised while handling another
    # (an implicit __context__) usually restates it, so that alone writes no log.
    return first, len(lines) > 1 or error.__cause__ is not None
