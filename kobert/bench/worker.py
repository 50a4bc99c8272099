"""The worker protocol: one process, one row; one JSON request on stdin, one JSON reply line on stdout.

Framework-free: a worker imports its row's framework only through `kobert.runtimes.load` (or
the runtime module's `gemm_session`) once the request names it, so the parent, which starts
one worker per row and round, never holds a framework itself.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import resource
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from kobert.bench.measure import rss_mb
from kobert.bench.rows import MXNET_RAW_ROW, XLA_ROW

def gemm_operands(m: int, k: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The GEMM row's float32 operands (m x k) and (k x n), the same for every framework."""
    rng = np.random.default_rng(seed)
    return rng.random((m, k), dtype=np.float32) - 0.5, rng.random((k, n), dtype=np.float32) - 0.5


def make_inputs(shape: tuple[int, int], vocab_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    ids = np.random.default_rng(seed).integers(5, vocab_size, size=shape, dtype=np.int64)
    ids[:, 0] = 2  # [CLS]
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def _register_missing(request: dict) -> None:
    """Make the parent's registry rows known here too (a target a test registered, say)."""
    from kobert import registry

    for spec in request.get("runtime_specs", []):
        if spec["name"] not in registry.RUNTIMES:
            registry.register_runtime(registry.RuntimeSpec(**spec))
    for target in request.get("targets", []):
        if target["name"] not in registry.TARGETS:
            registry.register_target(registry.Target(**target))


def time_interleaved(calls: dict, inner_timers: dict, shapes: list[str], warmup: int, count: int,
                     seed: int = 0) -> dict[str, dict[str, list[float]]]:
    """Seconds of every call: label -> shape -> [seconds], the calls of one process taking turns.

    `calls`: label -> callable(shape). `inner_timers`: label -> (label of a call,
    callable() -> seconds that call spent inside the framework), read right after it.
    """
    rng = random.Random(seed)
    times = {label: {} for label in [*calls, *inner_timers]}
    order = list(calls)
    for shape in shapes:
        for call in calls.values():
            for _ in range(warmup):
                call(shape)
        samples = {label: [] for label in times}
        for _ in range(count):
            rng.shuffle(order)
            for label in order:
                start = time.perf_counter()
                calls[label](shape)
                samples[label].append(time.perf_counter() - start)
                for inner, (source, seconds) in inner_timers.items():
                    if source == label:
                        samples[inner].append(float(seconds()))
        for label, found in samples.items():
            times[label][shape] = found
    return times


def _time_runtime(request: dict) -> dict:
    """A registry row: its adapter, its raw session (and TensorFlow's XLA variant), interleaved."""
    from kobert import runtimes

    _register_missing(request)
    shapes = {name: tuple(shape) for name, shape in request["shapes"].items()}
    inputs = {name: make_inputs(shape, request["vocab_size"]) for name, shape in shapes.items()}
    label = request["label"]
    rss_before = rss_mb("VmRSS")
    with runtimes.load(request["export_dir"], runtime=request["runtime"], artifact=request["artifact"],
                       verify=False) as runtime:
        calls, inner = {}, {}
        if not request.get("raw_only"):
            calls[label] = lambda shape: runtime.run(**inputs[shape])
            if hasattr(runtime, "last_forward_seconds"):  # MXNet: the SymbolBlock call, timed where it runs
                inner[MXNET_RAW_ROW] = (label, lambda: runtime.last_forward_seconds)
        try:
            calls[label if request.get("raw_only") else label + " (raw session)"] = _raw_call(runtime, inputs)
        except NotImplementedError:
            pass
        if hasattr(runtime, "xla_session"):
            calls[XLA_ROW] = _raw_call(runtime, inputs, runtime.xla_session())
        times = time_interleaved(calls, inner, list(shapes), request["warmup"], request["calls"],
                                 request.get("seed", 0))
        peak = rss_mb("VmHWM")
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the MXNet worker, once ended
    return {"times": times, "peak_rss_mb": peak, "rss_before_load_mb": rss_before,
            "children_peak_rss_mb": children or None}


def _raw_call(runtime, inputs: dict, session=None):
    """The framework's own call on pre-converted inputs: a callable(shape name)."""
    session = session or runtime.raw_session()
    feeds = {shape: runtime.raw_feed(x) for shape, x in inputs.items()}
    return lambda shape: session(feeds[shape])


def _time_gemm(request: dict) -> dict:
    """One framework's float32 MatMul at each shape's token count: seconds per call, and a checksum."""
    from kobert import registry

    module = importlib.import_module(registry.runtime_spec(request["runtime"]).implementation.partition(":")[0])
    k, n = request["k"], request["n"]
    times, checksums = {}, {}
    for shape, m in request["rows"].items():
        x, w = gemm_operands(m, k, n)
        call = module.gemm_session(x, w)
        checksums[shape] = float(np.asarray(call(), dtype=np.float64).sum())
        times[shape] = time_interleaved({request["label"]: lambda _: call()}, {}, [shape], request["warmup"],
                                        request["calls"])[request["label"]][shape]
    return {"times": {request["label"]: times}, "checksums": checksums, "peak_rss_mb": rss_mb("VmHWM")}


WORKER_KINDS = {"runtime": _time_runtime, "gemm": _time_gemm}


def worker_main(kinds: dict | None = None) -> int:
    """`python -m kobert.bench --worker`: one JSON request on stdin, one JSON reply line on stdout.

    Request: {"kind": "runtime" | "gemm", "label": ..., ...} (see `_time_runtime`,
    `_time_gemm`). Reply: {"times": {label: {shape: [seconds]}}, "peak_rss_mb": ...}
    or {"error": "one line"} (exit code 1; the traceback goes to stderr). The
    reply has stdout to itself: everything else the process prints (a framework's
    banner, a stray print) is sent to stderr.
    """
    kinds = WORKER_KINDS if kinds is None else kinds
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    try:
        request = json.loads(sys.stdin.readline())
        handler = kinds.get(request.get("kind")) if isinstance(request, dict) else None
        if handler is None:
            kind = request.get("kind") if isinstance(request, dict) else request
            raise ValueError(f"unknown request kind {kind!r}; expected one of {', '.join(kinds)}")
        reply = handler(request)
    except Exception as e:
        traceback.print_exc()
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        reply = {"error": f"{type(e).__name__}: {first}"}
    replies.write(json.dumps(reply) + "\n")
    replies.flush()
    return 1 if "error" in reply else 0


class WorkerError(RuntimeError):
    """A bench worker gave no reply, or replied with an error."""


def run_worker(request: dict, timeout: float | None = None, command: list[str] | None = None) -> dict:
    """Start one worker process, send it `request`, return its reply (raise WorkerError on failure).

    `command`: another program speaking the same protocol (`worker_main` with its own kinds).
    """
    package_root = str(Path(__file__).resolve().parents[2])  # the worker imports this same kobert
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    label = request.get("label", request.get("kind"))
    try:
        done = subprocess.run(command or [sys.executable, "-m", "kobert.bench", "--worker"],
                              input=json.dumps(request) + "\n",
                              capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise WorkerError(f"bench worker for {label!r}: no reply within {timeout:g} s") from None
    lines = done.stdout.strip().splitlines()
    try:
        reply = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        reply = None
    if not isinstance(reply, dict):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise WorkerError(f"bench worker for {label!r} exited {done.returncode} without a reply: {last}")
    if "error" in reply:
        raise WorkerError(f"bench worker for {label!r}: {reply['error']}")
    return reply
