"""MXNet runtime: runs the `mxnet` artifact (symbol + params) with the one Runtime API.

Where mxnet imports in this interpreter the SymbolBlock is loaded in-process.
Otherwise (the usual case: the main venv has numpy 2, which MXNet 1.9.1 cannot
import with) one persistent worker process is started in the MXNet interpreter
(`kobert.mxnet_env`) and spoken to over pipes (`kobert.runtimes.mxnet_worker`).
Either way the adapter is thin: cast inputs to the artifact's dtypes, run, name
the outputs.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path

import numpy as np

from kobert.mxnet_env import mxnet_in_process, mxnet_module_command
from kobert.runtimes import mxnet_worker
from kobert.runtimes.base import Runtime


def _with_threads(env: dict[str, str], threads: int | None) -> dict[str, str]:
    """The worker's environment with MXNet's CPU threads set (OpenMP for its operators)."""
    if threads is None:
        return env
    return {**env, "OMP_NUM_THREADS": str(threads), "MXNET_CPU_WORKER_NTHREADS": str(threads)}


def _mxnet_imports_here() -> bool:
    if not mxnet_in_process():
        return False
    try:
        import mxnet  # noqa: F401
    except Exception:  # installed but broken here (numpy 2): use the worker instead
        return False
    return True


# A worker that has not answered after this long (loading KoBERT-base, or one forward) is killed,
# so no caller waits forever on its pipe holding the worker's lock.
WORKER_TIMEOUT_S = 600


def _stop_worker(process: subprocess.Popen, stderr_file) -> None:
    """End the worker: EOF on its stdin ends its loop; kill it if it does not go."""
    try:
        if process.poll() is None:
            try:
                process.stdin.close()
                process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
    finally:
        for stream in (process.stdin, process.stdout, stderr_file):
            try:
                stream.close()
            except OSError:
                pass


class MXNetWorker:
    """One persistent MXNet interpreter serving one model over stdin/stdout."""

    def __init__(self, symbol_file: Path, params_file: Path, input_names: list[str],
                 timeout: float = WORKER_TIMEOUT_S, threads: int | None = None):
        # Absolute paths: the worker runs in its own directory (see kobert.mxnet_env).
        command = mxnet_module_command("kobert.runtimes.mxnet_worker", Path(symbol_file).resolve(),
                                       Path(params_file).resolve(), json.dumps(list(input_names)))
        self.python = command.argv[0]
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self._stderr, env=_with_threads(command.env, threads), cwd=command.cwd)
        self._lock = threading.Lock()
        self.timeout = timeout
        self.last_forward_seconds: float | None = None
        # Ends the worker when this object is collected, closed, or at interpreter exit.
        self._finalizer = weakref.finalize(self, _stop_worker, self.process, self._stderr)
        reply = self._receive()
        if "error" in reply:
            self.close()
            raise RuntimeError(f"MXNet worker ({self.python}) could not load {symbol_file}:\n{reply['error']}")
        self.mxnet_version = str(reply["ready"])

    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            return self._stderr.read().decode(errors="replace")[-4000:]
        except (OSError, ValueError):
            return ""

    def _receive(self) -> dict[str, np.ndarray]:
        # The watchdog kills a worker that does not answer in time; its pipe then closes and the read ends.
        hung = threading.Event()
        watchdog = threading.Timer(self.timeout, lambda: (hung.set(), self.process.kill()))
        watchdog.daemon = True
        watchdog.start()
        try:
            reply = mxnet_worker.read_message(self.process.stdout)
        except (EOFError, OSError, ValueError) as e:
            reply, reason = None, str(e)
        else:
            reason = "pipe closed"
        finally:
            watchdog.cancel()
        if hung.is_set():
            self.process.wait()
            raise RuntimeError(f"MXNet worker ({self.python}, pid {self.process.pid}) did not answer within "
                               f"{self.timeout:.0f} s and was killed:\n{self._stderr_tail()}")
        if reply is None:
            code = self.process.poll()
            raise RuntimeError(f"MXNet worker ({self.python}) stopped ({reason}, exit code {code}):\n{self._stderr_tail()}")
        return reply

    def run(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            if not self._finalizer.alive:
                raise RuntimeError("MXNet worker is closed")
            try:
                mxnet_worker.write_message(self.process.stdin, inputs)
            except (BrokenPipeError, OSError):
                raise RuntimeError(f"MXNet worker ({self.python}) is gone:\n{self._stderr_tail()}") from None
            reply = self._receive()
        if "error" in reply:
            raise RuntimeError(f"MXNet worker failed:\n{reply['error']}")
        self.last_forward_seconds = float(reply.pop(mxnet_worker.FORWARD_SECONDS))
        return [reply[f"out{i}"] for i in range(len(reply))]

    def close(self) -> None:
        self._finalizer()


class MXNetRuntime(Runtime):
    """`last_forward_seconds`: the plain SymbolBlock call of the last run, without adapter or pipe."""

    name = "mxnet"
    default_artifact = "mxnet"

    def _open(self, files: list[Path]) -> None:
        symbol_file, params_file = files  # the manifest lists the symbol, then the params
        self._input_names = [spec["name"] for spec in self.entry["inputs"]]
        self._input_dtypes = [np.dtype(spec.get("dtype", "float32")) for spec in self.entry["inputs"]]
        self._block = self._worker = None
        self.last_forward_seconds: float | None = None
        if _mxnet_imports_here():
            self._block = mxnet_worker.load_symbol_block(str(symbol_file), str(params_file), self._input_names)
        else:
            self._worker = MXNetWorker(symbol_file, params_file, self._input_names, threads=self.threads)

    def _forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = [inputs[name].astype(dtype) for name, dtype in zip(self._input_names, self._input_dtypes)]
        if self._block is not None:
            start = time.perf_counter()
            outputs = mxnet_worker.forward(self._block, arrays)
            self.last_forward_seconds = time.perf_counter() - start
        elif self._worker is not None:
            outputs = self._worker.run(dict(zip(self._input_names, arrays)))
            self.last_forward_seconds = self._worker.last_forward_seconds
        else:
            raise RuntimeError(f"{self.export_dir}: this MXNet runtime is closed")
        if len(outputs) != len(self.output_names):
            raise RuntimeError(f"{self.export_dir}: the MXNet symbol gave {len(outputs)} outputs, "
                               f"the manifest names {len(self.output_names)}: {self.output_names}")
        return dict(zip(self.output_names, outputs))

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
        self._block = self._worker = None
