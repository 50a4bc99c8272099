"""Every folder kobert writes (an export, a web package, the shipped backbone) appears whole or not at all.

It is built in a hidden staging folder beside its destination, marked with `STAGING_MARKER`
(holding the writing process's id), then swapped in by renames; an earlier folder is
removed only after the swap. A writer killed halfway leaves a marked folder that the next
write to the same destination removes (`remove_stale_staging`), and nothing unmarked is
ever touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

# Every staging folder holds this file (with the writing process's id), so a later write to
# the same destination knows which leftovers beside it are ours to remove, and nothing else.
STAGING_MARKER = ".kobert-staging"


def write_json(path: Path, data: dict) -> None:
    """The JSON files kobert writes: indented, UTF-8 as is, one final newline."""
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@contextmanager
def staging_folder(out: Path, error: type[Exception] = OSError, what: str = "the folder"):
    """A marked hidden folder beside `out`, removed on any failure, SIGTERM or Ctrl-C included.

    `error` is raised (naming `what`) when the folder cannot be made there.
    """
    remove_stale_staging(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as e:
        raise error(f"{out.parent}: cannot create {what} there ({e.strerror or e})") from None
    previous_handler = None
    try:
        (staging / STAGING_MARKER).write_text(str(os.getpid()))  # inside: a full disk leaves no folder either
        previous_handler = _exit_on_sigterm()
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)


def move_into_place(staging: Path, out: Path) -> None:
    """Swap the finished folder in (unmarked); a previous folder at `out` is removed only after the swap.

    If the swap fails, the previous folder is renamed back, unmarked: it never becomes staging that a
    later write would remove. Killed between the two renames, it stays beside `out`, unmarked, untouched.
    """
    (staging / STAGING_MARKER).unlink(missing_ok=True)
    staging.chmod(0o755)  # mkdtemp made it private
    if not out.exists():
        staging.rename(out)
        return
    previous = out.with_name(f".{out.name}.partial-previous-{os.getpid()}")
    out.rename(previous)
    try:
        staging.rename(out)
    except BaseException:
        previous.rename(out)
        raise
    # Marked only now that the new folder is in place: if we die while removing it, the next write does.
    try:
        (previous / STAGING_MARKER).write_text(str(os.getpid()))
    except OSError:
        pass  # a full disk: removed below all the same
    shutil.rmtree(previous, ignore_errors=True)


def remove_stale_staging(out: Path) -> None:
    """Remove leftovers of interrupted writes to `out`: marked folders whose process is gone."""
    if not out.parent.is_dir():
        return
    for folder in out.parent.glob(f".{out.name}.partial-*"):
        marker = folder / STAGING_MARKER
        try:
            pid = int(marker.read_text().strip())
        except (OSError, ValueError):
            continue  # not ours (no marker): left alone
        if not _process_alive(pid):
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != 0


def _exit_on_sigterm():
    """Make SIGTERM raise SystemExit (so `finally` blocks clean up); None where signals cannot be set."""
    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    try:
        return signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread
        return None
