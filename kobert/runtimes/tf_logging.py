"""TensorFlow's start-up noise, owned by the TF spoke (the tf, tf-text and tflite runtimes and exporters).

`quiet` runs before TensorFlow is imported (the CLI calls it, through the registry's
runtime rows, unless --verbose), so this module imports no framework at import time;
the TF spokes import TensorFlow through `import_tensorflow`.
"""

from __future__ import annotations

import os

from kobert.progress import native_stderr_quieted


def quiet() -> None:
    """Silence TensorFlow's C++ and absl start-up logging (set before TensorFlow is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # TensorFlow prints its oneDNN notice only when this is unset; "1" is its default (oneDNN on).
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass


def import_tensorflow():
    """`import tensorflow`, without its start-up noise unless --verbose."""
    with native_stderr_quieted():
        import tensorflow

    return tensorflow
