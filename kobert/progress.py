"""Progress lines on stderr for long steps (export stages, parity, `run --input`, eval).

stdout stays the command's result (tables, JSON lines); progress goes to stderr
and `--quiet` silences it. `quiet_frameworks` hides the frameworks' start-up
noise unless `--verbose`: it asks each runtime's own hook (the registry's
`RuntimeSpec.quiet`), so this module knows no framework.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager

_state = {"quiet": False, "verbose": True}  # library use keeps every log; the CLI quiets them


def set_quiet(quiet: bool) -> None:
    _state["quiet"] = quiet


def say(message: str) -> None:
    if not _state["quiet"]:
        print(f"kobert: {message}", file=sys.stderr, flush=True)


class Counter:
    """'N lines done' at most every `every` seconds, and once at the end."""

    def __init__(self, what: str, every: float = 5.0):
        self.what, self.every = what, every
        self.count, self.start = 0, time.monotonic()
        self._last = self.start

    def add(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            say(f"{self.what}: {self.count:,} done ({self.count / (now - self.start):,.0f}/s)")

    def done(self) -> None:
        seconds = time.monotonic() - self.start
        say(f"{self.what}: {self.count:,} done in {seconds:.1f} s")


def quiet_frameworks() -> None:
    """Hide start-up logging: native stderr during framework imports, and each runtime's own `quiet` hook."""
    _state["verbose"] = False
    from kobert import registry

    registry.quiet_runtimes()


# fd 2 belongs to the whole process: every thread that quiets it shares one swap, counted, so
# the last one out restores the real stderr whatever order the threads leave in.
_stderr_swap = {"depth": 0, "saved": None}
_stderr_lock = threading.Lock()


@contextmanager
def native_stderr_quieted():
    """Send C++ start-up logging (fd 2) to /dev/null for a moment, unless --verbose.

    TensorFlow 2.21 logs its oneDNN notice through absl before logging is set up,
    and TFLite announces its XNNPACK delegate; no environment variable stops
    either. Python exceptions are unaffected: they are raised, not printed.
    Safe from many threads at once (see `_stderr_swap`).
    """
    if _state["verbose"]:
        yield
        return
    with _stderr_lock:
        if _stderr_swap["depth"] == 0:
            sys.stderr.flush()
            saved = os.dup(2)
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)
            _stderr_swap["saved"] = saved
        _stderr_swap["depth"] += 1
    try:
        yield
    finally:
        with _stderr_lock:
            _stderr_swap["depth"] -= 1
            if _stderr_swap["depth"] == 0:
                os.dup2(_stderr_swap["saved"], 2)
                os.close(_stderr_swap["saved"])
                _stderr_swap["saved"] = None
