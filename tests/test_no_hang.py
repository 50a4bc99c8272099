"""No hang, no loss, no side effect: every child process and worker read is bounded, a failed start
cleans up, a failed swap keeps the previous folder, stderr quieting is thread-safe, downloads are pinned.

Hung children are stand-ins (a python that sleeps), so nothing here needs MXNet, MMS or tf2onnx.
"""

import ast
import errno
import io
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

KOBERT_DIR = Path(__file__).resolve().parent.parent / "kobert"
SLEEPER = [sys.executable, "-c", "import time; time.sleep(30)"]


# --- a timeout on every child process ------------------------------------------------------------


def test_every_subprocess_run_in_kobert_has_a_timeout():
    missing = []
    for path in sorted(KOBERT_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "run"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "subprocess"
                    and not any(k.arg == "timeout" for k in node.keywords)):
                missing.append(f"{path.relative_to(KOBERT_DIR.parent)}:{node.lineno}")
    assert missing == [], "subprocess.run without a timeout"


@pytest.fixture
def hung_children(monkeypatch):
    """Every subprocess.run starts a python that sleeps 30 s instead, keeping the caller's options."""
    real_run = subprocess.run

    def run(command, *args, **kwargs):
        return real_run(SLEEPER, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)


def _mxnet_export(monkeypatch, tmp_path):
    from kobert.checkpoint import init_checkpoint, load_checkpoint
    from kobert.config import preset
    from kobert.exporters import mxnet
    from kobert.mxnet_env import MXNetCommand

    monkeypatch.setattr(mxnet, "EXPORT_TIMEOUT_S", 1)
    monkeypatch.setattr(mxnet, "mxnet_module_command",
                        lambda *args: MXNetCommand(list(SLEEPER), dict(os.environ), str(tmp_path)))
    weights = load_checkpoint(init_checkpoint(preset("tiny"), tmp_path / "ck")).weights
    return lambda: mxnet.export(weights, tmp_path / "export"), "MXNet export did not finish within 1 s and was killed"


def _tf2onnx(monkeypatch, tmp_path):
    from kobert.exporters import tf2onnx

    monkeypatch.setattr(tf2onnx, "CONVERT_TIMEOUT_S", 1)
    return (lambda: tf2onnx.convert_savedmodel(tmp_path / "tf", tmp_path / "out" / "model.onnx"),
            "tf2onnx did not finish within 1 s and was killed")


def _model_archiver(monkeypatch, tmp_path):
    from kobert.exporters import mms

    monkeypatch.setattr(mms, "ARCHIVER_TIMEOUT_S", 1)
    monkeypatch.setattr(mms, "mxnet_python", lambda: sys.executable)
    return (lambda: mms._run_model_archiver("kobert", tmp_path, tmp_path),
            "model-archiver did not finish within 1 s and was killed")


def _setup_step(monkeypatch, tmp_path):
    from kobert import mxnet_env

    monkeypatch.setattr(mxnet_env, "SETUP_STEP_TIMEOUT_S", 1)
    return (lambda: mxnet_env._run_setup_step(["pip", "install", "mxnet"], "install mxnet"),
            "could not install mxnet: `pip install mxnet` did not finish within 1 s and was killed")


@pytest.mark.parametrize("site", [_mxnet_export, _tf2onnx, _model_archiver, _setup_step])
def test_a_hung_child_is_killed_and_named(site, hung_children, monkeypatch, tmp_path):
    call, message = site(monkeypatch, tmp_path)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=re.escape(message)):
        call()
    assert time.monotonic() - start < 20


def test_a_hung_mxnet_probe_counts_as_no_mxnet(hung_children, monkeypatch):
    from kobert import mxnet_env

    monkeypatch.setattr(mxnet_env, "PROBE_TIMEOUT_S", 1)
    monkeypatch.setattr(mxnet_env, "mxnet_in_process", lambda: True)
    start = time.monotonic()
    assert mxnet_env.this_interpreter_imports_mxnet.__wrapped__() is False
    assert time.monotonic() - start < 20


# --- the MXNet worker: a read never blocks forever holding the lock --------------------------------

FAKE_WORKER = """
import sys, time
import numpy as np
from kobert.runtimes import mxnet_worker
if sys.argv[1] == "ready":
    mxnet_worker.write_message(sys.stdout.buffer, {"ready": np.array("fake")})
    sys.stdin.buffer.read(8)  # a request comes in, and is never answered
time.sleep(120)
"""


def fake_worker(monkeypatch, tmp_path, behaviour: str):
    from kobert.mxnet_env import MXNetCommand
    from kobert.runtimes import mxnet

    monkeypatch.setattr(mxnet, "mxnet_module_command", lambda *args: MXNetCommand(
        [sys.executable, "-c", FAKE_WORKER, behaviour], dict(os.environ), str(tmp_path)))
    return mxnet.MXNetWorker(tmp_path / "kobert-symbol.json", tmp_path / "kobert-0000.params", ["input_ids"],
                             timeout=2)


def test_a_worker_that_never_answers_a_request_is_killed_and_named(monkeypatch, tmp_path):
    worker = fake_worker(monkeypatch, tmp_path, "ready")
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"MXNet worker \(.*, pid \d+\) did not answer within 2 s and was killed"):
        worker.run({"input_ids": np.zeros((1, 4), dtype=np.int64)})
    assert time.monotonic() - start < 20
    assert worker.process.poll() is not None, "the hung worker still runs"
    assert worker._lock.acquire(blocking=False), "the lock is still held"
    worker._lock.release()
    with pytest.raises(RuntimeError, match="is gone"):
        worker.run({"input_ids": np.zeros((1, 4), dtype=np.int64)})
    worker.close()


def test_a_worker_that_never_gets_ready_is_killed_and_named(monkeypatch, tmp_path):
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="did not answer within 2 s and was killed"):
        fake_worker(monkeypatch, tmp_path, "silent")
    assert time.monotonic() - start < 20


# --- a local MMS whose start fails ends its process group ----------------------------------------


@pytest.mark.parametrize("launcher, message", [
    # Starts a child and never answers /ping.
    ("sleep 120 &\nexec sleep 120\n", "did not answer /ping within 2 s"),
    # Starts a child and exits before answering.
    ("sleep 120 &\nexit 3\n", "MMS exited with 3 before answering /ping"),
])
def test_a_failed_mms_start_leaves_no_process(tmp_path, launcher, message):
    from kobert.exporters.mms_server import LocalModelServer

    script = tmp_path / "multi-model-server"
    script.write_text("#!/bin/sh\n" + launcher)
    script.chmod(0o755)
    server = LocalModelServer(script, tmp_path / "store", tmp_path / "work")
    try:
        with pytest.raises(RuntimeError, match=re.escape(message)):
            server.start(timeout=2)
        assert server.leftover_pids() == []
    finally:
        server.stop()


# --- a failed final rename keeps the previous folder, unmarked ------------------------------------


def test_a_failed_swap_leaves_the_previous_export_in_place_and_unmarked(tmp_path, monkeypatch):
    from kobert.staging import STAGING_MARKER, move_into_place, remove_stale_staging, staging_folder

    out = tmp_path / "export"
    out.mkdir()
    (out / "manifest.json").write_text("the previous export")
    real_rename = Path.rename
    with staging_folder(out) as staging:
        (staging / "manifest.json").write_text("the new export")

        def rename(self, target):
            if self == staging:
                raise OSError(errno.EIO, "Input/output error", str(self))
            return real_rename(self, target)

        monkeypatch.setattr(Path, "rename", rename)
        with pytest.raises(OSError, match="Input/output error"):
            move_into_place(staging, out)
        monkeypatch.undo()
    assert (out / "manifest.json").read_text() == "the previous export"
    assert not (out / STAGING_MARKER).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["export"]
    remove_stale_staging(out)
    assert (out / "manifest.json").read_text() == "the previous export"


def test_a_swap_replaces_the_previous_folder(tmp_path):
    from kobert.staging import move_into_place, staging_folder

    out = tmp_path / "export"
    out.mkdir()
    (out / "manifest.json").write_text("old")
    with staging_folder(out) as staging:
        (staging / "manifest.json").write_text("new")
        move_into_place(staging, out)
    assert [p.name for p in tmp_path.iterdir()] == ["export"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]
    assert (out / "manifest.json").read_text() == "new"


# --- stderr quieting: scoped and thread-safe ------------------------------------------------------


def _fd2() -> tuple[int, int]:
    stat = os.fstat(2)
    return stat.st_dev, stat.st_ino


def test_quieting_stderr_from_two_threads_restores_it_in_any_order(monkeypatch):
    from kobert import progress

    monkeypatch.setitem(progress._state, "verbose", False)
    devnull = os.stat(os.devnull)
    real = _fd2()
    inside_both = []
    for first_out in ("a", "b"):
        a_in, b_in, one_out = threading.Event(), threading.Event(), threading.Event()

        def quiet(name, mine, other):
            if name == "b":
                a_in.wait(10)  # b quiets stderr while a has it quieted
            with progress.native_stderr_quieted():
                mine.set()
                other.wait(10)
                if name == first_out:
                    inside_both.append(_fd2() == (devnull.st_dev, devnull.st_ino))
                else:
                    one_out.wait(10)
            if name == first_out:
                one_out.set()

        threads = [threading.Thread(target=quiet, args=("a", a_in, b_in)),
                   threading.Thread(target=quiet, args=("b", b_in, a_in))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert _fd2() == real, f"stderr left on another file after {first_out!r} left first"
    assert inside_both == [True, True]


# --- NSMC: pinned to a commit and checked ---------------------------------------------------------


def test_nsmc_download_is_pinned_and_fails_closed(tmp_path, monkeypatch):
    from kobert import datasets

    urls = []

    def serve(url, timeout):
        urls.append(url)
        return io.BytesIO(b"id\tdocument\tlabel\n1\tnot the official file\t1\n")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", serve)
    with pytest.raises(ValueError, match=f"sha256 [0-9a-f]{{64}}, expected {datasets.NSMC_SHA256['train']}"):
        datasets.download_nsmc(tmp_path / "cache")
    assert re.fullmatch(r"https://raw\.githubusercontent\.com/e9t/nsmc/[0-9a-f]{40}/ratings_train\.txt", urls[0])
    assert list((tmp_path / "cache").iterdir()) == []


def test_nsmc_download_keeps_only_the_official_files(tmp_path, monkeypatch):
    from kobert import datasets

    official = datasets.default_nsmc_dir()
    if not all((official / name).is_file() for name in datasets.NSMC_FILES.values()):
        pytest.skip(f"{official}: the NSMC files are not here to serve")
    monkeypatch.setattr(datasets.urllib.request, "urlopen",
                        lambda url, timeout: io.BytesIO((official / Path(url).name).read_bytes()))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ratings_test.txt").write_text("id\tdocument\tlabel\n1\ttampered\t1\n")  # an earlier, unchecked download
    assert datasets.download_nsmc(cache) == cache
    for name in datasets.NSMC_FILES.values():
        assert (cache / name).read_bytes() == (official / name).read_bytes()
