"""`kobert bench`: every runtime on the same inputs, each row in a process of its own.

How we measure:
- model: KoBERT-base shape, random init, sequence-classification head (2 labels);
  `--quick` uses the tiny preset. The shipped default (kobert/assets/model/) is
  measured too when it exists (not in --quick).
- shapes: batch x tokens in `SHAPES` (1 x 16, 1 x 128, 8 x 128, 32 x 128); random
  ids, full attention mask.
- one process per row: the parent exports every artifact, then starts
  `python -m kobert.bench --worker` once per row and round, and reads one JSON
  reply (see `worker_main`). A worker imports one framework, loads one artifact,
  and times it. Why: in one process holding every framework, torch at batch 8
  measured 1.25-1.42 s once TensorFlow was loaded and warmed, against
  1.11-1.16 s alone; a row's figure must not depend on its neighbours.
- rounds: every round starts every row's process again, the rows in a new
  shuffled order. A fresh process per round, not one warm process per row kept
  for the whole run: only one framework is then ever alive (no idle thread pool
  of another framework spinning on the cores, no other row's memory), a row's
  peak RSS is its own process's, and what differs between two starts of the same
  program (thread placement, allocator state, JIT caches) shows up in the
  spread instead of being frozen into one process's luck. It costs one model load
  per row and round.
- inside a worker: `warmup` calls per shape, then `calls` timed calls
  (`time.perf_counter` around one call). The kobert adapter (`rt.run`: input
  checks, casts, output naming) and the framework's own session on the same file
  (`raw_session()` / `raw_feed()`) take turns call by call in that process;
  overhead % = adapter / raw - 1.
- figures: a round's figure is the median of its calls; the table gives the
  median over rounds and, in brackets, the min-max over rounds (process to
  process). "x torch" = torch eager time / row time (above 1 is faster).
- GEMM ceiling: in the same run, one FFN-shaped float32 MatMul (tokens x hidden)
  @ (hidden x intermediate), at each shape's token count, in torch, ONNX Runtime
  and TensorFlow (each in its own worker, like a row). The machine's ceiling at a
  shape is the best of the three; every fp32 row is given in GFLOP/s
  (`model_flops`) and as % of that ceiling.
- MXNet's adapter talks to an MXNet worker process (numpy 2 here, MXNet needs
  numpy < 2), so its row includes the pipe round trip; the raw SymbolBlock time
  is measured inside that worker.
- memory: the peak RSS (VmHWM) of the row's worker process: interpreter,
  framework, model, and the calls (the MXNet worker's own peak given apart).
- export time: each exporter alone (no parity), wall clock, in the parent.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

# Shape name -> (batch, tokens).
SHAPES = {"b1 s16": (1, 16), "b1 s128": (1, 128), "b8 s128": (8, 128), "b32 s128": (32, 128)}
TORCH_ROW = "torch eager"
MXNET_RAW_ROW = "mxnet SymbolBlock (raw, timed inside the worker)"
XLA_ROW = "tensorflow XLA (jit_compile)"
# The GEMM-ceiling rows: label -> the runtime module whose `gemm_session(x, w)` runs the MatMul.
GEMM_ROWS = {"GEMM torch matmul": "torch", "GEMM onnxruntime MatMul": "onnx", "GEMM tensorflow matmul": "tf"}
# Gates whose artifacts compute in float32: their rows are compared with the fp32 GEMM ceiling.
FP32_GATES = ("fp32", "fp32-fused")
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def runtime_rows() -> dict[str, tuple[str, str]]:
    """Row label -> (runtime, artifact), for every registry target with a bench label."""
    from kobert import registry

    return {t.bench_label: (t.runtime, t.name) for t in registry.TARGETS.values() if t.bench_label}


def model_flops(config, batch: int, length: int) -> int:
    """Floating-point operations of one forward pass (a multiply-add counts 2), from the config.

    With H = hidden_size, I = intermediate_size, L = layers, T = tokens per
    sequence, B = batch:
    - per layer and token, the weight matmuls: Q, K, V and the attention output
      (4 of H x H) and the FFN (H x I, then I x H): 2 * (4 H^2 + 2 H I) = 8 H^2 + 4 H I,
      i.e. 2 x the layer's weight count;
    - per layer and sequence, attention itself: scores Q K^T and the weighted sum
      P V, each T x T x H: 2 * 2 * T^2 * H = 4 T^2 H;
    - per sequence, the pooler (2 H^2, when the model has one); the head, 2 H x
      labels per sequence (per token for token classification and QA).
    Total = B * (L * (T * (8 H^2 + 4 H I) + 4 T^2 H) + 2 H^2 + head).
    Not counted (under 1 % at base): embedding lookups, biases, LayerNorm, softmax, GELU.
    KoBERT-base at 1 x 128 with 2 labels: 22.35 GFLOP; at 32 x 128: 715.1 GFLOP.
    """
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_layer = length * (8 * h * h + 4 * h * i) + 4 * length * length * h
    pooler = 2 * h * h if config.has_pooler else 0
    head = 2 * h * config.num_labels * (length if config.head_spec.per_token else 1)
    return batch * (layers * per_layer + pooler + head)


def gemm_flops(m: int, k: int, n: int) -> int:
    return 2 * m * k * n


def gemm_operands(m: int, k: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The GEMM row's float32 operands (m x k) and (k x n), the same for every framework."""
    rng = np.random.default_rng(seed)
    return rng.random((m, k), dtype=np.float32) - 0.5, rng.random((k, n), dtype=np.float32) - 0.5


def make_inputs(shape: tuple[int, int], vocab_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    ids = np.random.default_rng(seed).integers(5, vocab_size, size=shape, dtype=np.int64)
    ids[:, 0] = 2  # [CLS]
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def median_seconds(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_info(path: str = "/proc/cpuinfo") -> dict:
    """CPU model, visible CPUs, and which of `CPU_FLAGS` (and any amx_* flag) the CPU reports."""
    model, flags = "unknown", set()
    try:
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    wanted = list(dict.fromkeys([*CPU_FLAGS, *sorted(f for f in flags if f.startswith("amx"))]))
    return {"model": model, "cpus": os.cpu_count(), "flags": {f: f in flags for f in wanted}}


def cpu_line(info: dict) -> str:
    have = " ".join(f for f, on in info["flags"].items() if on) or "none"
    missing = " ".join(f for f, on in info["flags"].items() if not on) or "none"
    return f"CPU: {info['model']}, {info['cpus']} CPUs visible; flags: {have}; absent: {missing}"


# --- the worker: one process, one row --------------------------------------------


def rss_mb(field_name: str) -> float | None:
    """This process's VmRSS or VmHWM (peak) from /proc/self/status, in MB; None where unreadable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


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
    package_root = str(Path(__file__).resolve().parents[1])  # the worker imports this same kobert
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


# --- the parent: export, start the workers, gather ---------------------------------


@dataclass
class BenchResult:
    model: str
    config: object  # KoBertConfig of the benchmarked model
    rounds: int
    calls: int
    cpu: dict = field(default_factory=cpu_info)
    load_average: dict = field(default_factory=dict)  # "start" / "end": 1-minute load average of the machine
    seconds: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # row -> shape -> round medians
    fp32_rows: list[str] = field(default_factory=list)
    gemm_rows: list[str] = field(default_factory=list)
    raw_of: dict[str, str] = field(default_factory=dict)  # adapter row -> its raw-session row
    export_seconds: dict[str, float] = field(default_factory=dict)
    size_bytes: dict[str, int] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)  # artifact -> max over rounds of its worker's VmHWM
    tokenizer_docs_per_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    others: list["BenchResult"] = field(default_factory=list)  # the shipped default, when measured

    # --- figures ---

    def median(self, row: str, shape: str) -> float | None:
        found = self.seconds.get(row, {}).get(shape)
        return statistics.median(found) if found else None

    def ratios(self) -> dict[str, dict[str, float]]:
        """x torch = torch eager time / row time, per model row and shape."""
        out = {}
        for row in self.model_rows():
            out[row] = {}
            for shape in SHAPES:
                base, mine = self.median(TORCH_ROW, shape), self.median(row, shape)
                if base and mine:
                    out[row][shape] = base / mine
        return out

    def model_rows(self) -> list[str]:
        return [row for row in self.seconds if row not in self.gemm_rows]

    def flops(self, shape: str) -> int:
        return model_flops(self.config, *SHAPES[shape])

    def gemm_shape(self, shape: str) -> tuple[int, int, int]:
        batch, length = SHAPES[shape]
        return batch * length, self.config.hidden_size, self.config.intermediate_size

    def gflops(self, row: str, shape: str) -> float | None:
        seconds = self.median(row, shape)
        if not seconds:
            return None
        work = gemm_flops(*self.gemm_shape(shape)) if row in self.gemm_rows else self.flops(shape)
        return work / seconds / 1e9

    def ceiling(self, shape: str) -> float | None:
        """The machine's GEMM ceiling at this shape's token count: the best framework's GFLOP/s."""
        found = [g for row in self.gemm_rows if (g := self.gflops(row, shape))]
        return max(found) if found else None

    def percent_of_ceiling(self, row: str, shape: str) -> float | None:
        rate, ceiling = self.gflops(row, shape), self.ceiling(shape)
        return 100 * rate / ceiling if rate and ceiling else None

    def overhead(self) -> dict[str, dict[str, float]]:
        """adapter / raw session - 1, per row with a raw session."""
        out = {}
        for row, raw in self.raw_of.items():
            cells = {s: self.median(row, s) / self.median(raw, s) - 1 for s in SHAPES
                     if self.median(row, s) and self.median(raw, s)}
            if cells:
                out[row] = cells
        return out

    # --- output ---

    def table(self) -> str:
        shapes = list(SHAPES)
        lines = [f"## {self.model}", "", cpu_line(self.cpu), "", self._machine_line(), "",
                 f"ms per call: median over {self.rounds} rounds (each a fresh process per row, the median of its "
                 f"{self.calls} calls), [min-max over rounds]; x torch = torch eager time / row time", "",
                 "| row | " + " | ".join(f"{s} ms | x torch" for s in shapes) + " |",
                 "|---|" + "---|---|" * len(shapes)]
        ratios = self.ratios()
        for row in self.model_rows():
            cells = []
            for s in shapes:
                found = self.seconds[row].get(s)
                if not found:
                    cells.append("- | -")
                    continue
                ratio = ratios[row].get(s)
                cells.append(f"{statistics.median(found) * 1e3:.2f} [{min(found) * 1e3:.2f}-{max(found) * 1e3:.2f}] | "
                             f"{'-' if ratio is None else f'{ratio:.2f}'}")
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines += self._efficiency_table(shapes)
        overhead = self.overhead()
        if overhead:
            lines += ["", "| adapter vs raw session | " + " | ".join(f"{s} overhead %" for s in shapes) + " |",
                      "|---|" + "---|" * len(shapes)]
            for row, by_shape in overhead.items():
                lines.append(f"| {row} | " + " | ".join(f"{by_shape[s] * 100:+.1f}" if s in by_shape else "-"
                                                        for s in shapes) + " |")
        if self.export_seconds or self.size_bytes or self.peak_rss_mb:
            lines += ["", "| artifact | export s | size MB | peak RSS MB (its row's worker process) |", "|---|---|---|---|"]
            for name in dict.fromkeys([*self.export_seconds, *self.size_bytes, *self.peak_rss_mb]):
                e, size, mem = self.export_seconds.get(name), self.size_bytes.get(name), self.peak_rss_mb.get(name)
                lines.append(f"| {name} | {'-' if e is None else f'{e:.1f}'} | "
                             f"{'-' if size is None else f'{size / 1e6:.1f}'} | {'-' if mem is None else f'{mem:.0f}'} |")
        if self.tokenizer_docs_per_s:
            lines += ["", "| tokenizer | docs/s |", "|---|---|"]
            lines += [f"| {name} | {rate:,.0f} |" for name, rate in self.tokenizer_docs_per_s.items()]
        if self.notes:
            lines += [""] + [f"- {note}" for note in self.notes]
        return "\n\n".join(["\n".join(lines)] + [other.table() for other in self.others])

    def _machine_line(self) -> str:
        """How busy the machine was, and the OpenMP wait policy the workers inherited.

        Measured on a 2-CPU machine at load 5-6: torch (OpenMP) at KoBERT-base 1 x 128 took
        3.5-4.2 s per call with the default wait policy against 0.24-0.25 s with
        OMP_WAIT_POLICY=PASSIVE: spinning threads of an oversubscribed machine wait for each other.
        """
        load = ", ".join(f"{k} {v:.1f}" for k, v in self.load_average.items()) or "unknown"
        line = (f"machine: 1-minute load average {load} on {self.cpu['cpus']} CPUs; "
                f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset (active spinning)')}")
        if max(self.load_average.values(), default=0) > (self.cpu["cpus"] or 1):
            line += (" -- BUSY: other processes share the CPUs; OpenMP rows (torch, MXNet) can be many times "
                     "slower than alone (OMP_WAIT_POLICY=PASSIVE makes them degrade gracefully)")
        return line

    def _efficiency_table(self, shapes: list[str]) -> list[str]:
        lines = ["", f"GFLOP/s (model FLOPs from the config, `kobert.bench.model_flops`: "
                     + ", ".join(f"{s} {self.flops(s) / 1e9:.3g} GFLOP" for s in shapes)
                     + "); % of the GEMM ceiling = the best GEMM row at the same token count", "",
                 "| fp32 row | " + " | ".join(f"{s} GFLOP/s | % ceiling" for s in shapes) + " |",
                 "|---|" + "---|---|" * len(shapes)]
        for row in self.gemm_rows:
            m, k, n = self.gemm_shape(shapes[-1])
            cells = [f"{g:.1f} | {self.percent_of_ceiling(row, s):.0f}" if (g := self.gflops(row, s)) else "- | -"
                     for s in shapes]
            lines.append(f"| {row} (tokens x {k} x {n}) | " + " | ".join(cells) + " |")
        for row in self.fp32_rows:
            if row not in self.seconds:
                continue
            cells = [f"{g:.1f} | {self.percent_of_ceiling(row, s):.0f}"
                     if (g := self.gflops(row, s)) and self.ceiling(s) else "- | -" for s in shapes]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        return lines

    def to_dict(self) -> dict:
        rows = {}
        for row, by_shape in self.seconds.items():
            rows[row] = {}
            for shape, found in by_shape.items():
                rows[row][shape] = {"median_s": statistics.median(found), "min_s": min(found), "max_s": max(found),
                                    "round_medians_s": found, "gflops": self.gflops(row, shape),
                                    "percent_of_ceiling": self.percent_of_ceiling(row, shape)
                                    if row in self.fp32_rows or row in self.gemm_rows else None}
        return {"model": self.model, "cpu": self.cpu, "load_average": self.load_average,
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "rounds": self.rounds, "calls_per_round": self.calls,
                "shapes": {s: list(v) for s, v in SHAPES.items()},
                "model_flops": {s: self.flops(s) for s in SHAPES},
                "gemm_shape": {s: list(self.gemm_shape(s)) for s in SHAPES},
                "ceiling_gflops": {s: self.ceiling(s) for s in SHAPES},
                "rows": rows, "fp32_rows": self.fp32_rows, "gemm_rows": self.gemm_rows,
                "x_torch": self.ratios(), "adapter_overhead": self.overhead(),
                "export_seconds": self.export_seconds, "size_bytes": self.size_bytes,
                "peak_rss_mb": self.peak_rss_mb, "tokenizer_docs_per_s": self.tokenizer_docs_per_s,
                "notes": self.notes, "others": [o.to_dict() for o in self.others]}


def _export_all(weights, export_dir: Path, targets, result: BenchResult) -> dict:
    """Each exporter timed alone; the manifest runtimes need, without parity."""
    from kobert import registry
    from kobert.checkpoint import save_hf_checkpoint

    save_hf_checkpoint(weights, export_dir / "reference")
    manifest = {"source": "bench", "tokenizer": None, "config": weights.config.to_hf_dict(),
                "reference": {"files": ["reference"], "outputs": list(weights.config.output_names), "inputs": []},
                "artifacts": {}}
    for name in registry.build_order(targets):
        start = time.perf_counter()
        try:
            artifact = registry.target(name).load_exporter().export(weights, export_dir)
        except Exception as e:  # an exporter that cannot run here (no MXNet env) is a note, not a crash
            result.notes.append(f"{name}: not exported ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
            continue
        result.export_seconds[name] = time.perf_counter() - start
        manifest["artifacts"][name] = artifact.manifest_entry()
        result.size_bytes[name] = sum(p.stat().st_size for f in artifact.files
                                      for p in ([export_dir / f] if (export_dir / f).is_file() else (export_dir / f).rglob("*"))
                                      if p.is_file())
    (export_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def worker_requests(config, export_dir: Path, manifest: dict, warmup: int, calls: int) -> list[dict]:
    """One request per row: torch eager, every exported registry row, and the GEMM rows."""
    from kobert import registry

    shapes = {name: list(shape) for name, shape in SHAPES.items()}
    common = {"kind": "runtime", "export_dir": str(export_dir), "shapes": shapes, "vocab_size": config.vocab_size,
              "warmup": warmup, "calls": calls}
    requests = [{**common, "label": TORCH_ROW, "runtime": "torch", "artifact": registry.REFERENCE, "raw_only": True}]
    for row, (runtime_name, artifact) in runtime_rows().items():
        if artifact not in manifest["artifacts"]:
            continue
        chain = registry.build_order([artifact])
        requests.append({**common, "label": row, "runtime": runtime_name, "artifact": artifact,
                         "targets": [asdict(registry.target(name)) for name in chain],
                         "runtime_specs": [asdict(registry.runtime_spec(runtime_name))]})
    for label, runtime_name in GEMM_ROWS.items():
        requests.append({"kind": "gemm", "label": label, "runtime": runtime_name, "k": config.hidden_size,
                         "n": config.intermediate_size, "warmup": warmup, "calls": calls,
                         "rows": {name: b * t for name, (b, t) in SHAPES.items()}})
    return requests


def fp32_rows(manifest: dict) -> list[str]:
    """Rows that compute in float32: torch eager, and each fp32-gated target with its raw session (and XLA)."""
    from kobert import registry

    rows = [TORCH_ROW]
    for row, (runtime_name, artifact) in runtime_rows().items():
        if artifact in manifest["artifacts"] and registry.target(artifact).gate in FP32_GATES:
            rows += [row, row + " (raw session)"] + ([XLA_ROW] if runtime_name == "tf" else [])
    return rows


def bench_model(weights, label: str, rounds: int, warmup: int, calls: int, workdir: Path,
                progress=None) -> BenchResult:
    config = weights.config
    result = BenchResult(label, config, rounds, calls, load_average={"start": os.getloadavg()[0]})
    manifest = _export_all(weights, workdir, [artifact for _, artifact in runtime_rows().values()], result)
    requests = worker_requests(config, workdir, manifest, warmup, calls)
    result.gemm_rows = list(GEMM_ROWS)
    result.fp32_rows = fp32_rows(manifest)
    failed: set[str] = set()
    for number in range(rounds):
        order = list(requests)
        random.Random(number).shuffle(order)
        for request in order:
            if request["label"] in failed:
                continue
            if progress:
                progress(f"round {number + 1}/{rounds}: {request['label']}")
            try:
                reply = run_worker({**request, "seed": number})
            except WorkerError as e:
                failed.add(request["label"])
                result.notes.append(f"{request['label']}: not measured ({e})")
                continue
            for row, by_shape in reply["times"].items():
                for shape, found in by_shape.items():
                    result.seconds.setdefault(row, {}).setdefault(shape, []).append(statistics.median(found))
            peaks = [p for p in (reply.get("peak_rss_mb"), reply.get("children_peak_rss_mb")) if p]
            if peaks and request["kind"] == "runtime":
                artifact = request["artifact"]
                result.peak_rss_mb[artifact] = max(*peaks, result.peak_rss_mb.get(artifact, 0))
    result.load_average["end"] = os.getloadavg()[0]
    order = [TORCH_ROW, *[r for r in result.seconds if r not in (TORCH_ROW, *GEMM_ROWS)], *GEMM_ROWS]
    result.seconds = {row: result.seconds[row] for row in order if row in result.seconds}
    for row, (runtime_name, _) in runtime_rows().items():
        raw = MXNET_RAW_ROW if runtime_name == "mxnet" else row + " (raw session)"
        if row in result.seconds and raw in result.seconds:
            result.raw_of[row] = raw
    result.notes.append(f"threads: framework defaults in each worker (torch {_torch_threads_note()}, onnxruntime "
                        f"and tensorflow their own), tflite {os.cpu_count()}, mxnet OMP_NUM_THREADS="
                        f"{os.environ.get('OMP_NUM_THREADS', os.cpu_count())}")
    result.notes.append("peak RSS: the row's worker process (max over rounds); for MXNet the larger of the bench "
                        "worker and its MXNet interpreter")
    return result


def _torch_threads_note() -> str:
    return f"{os.environ['OMP_NUM_THREADS']} (OMP_NUM_THREADS)" if "OMP_NUM_THREADS" in os.environ else "default"


def bench_tokenizer(quick: bool) -> dict[str, float]:
    from kobert.checkpoint import shipped
    from kobert.datasets import default_nsmc_dir, read_nsmc
    from kobert.tokenizer import get_tokenizer

    nsmc = default_nsmc_dir() / "ratings_test.txt"
    if nsmc.is_file():
        docs, source = read_nsmc(nsmc).texts, "NSMC test"
    else:
        texts = json.loads((shipped("tokenizer").parent / "golden_inputs.json").read_text(encoding="utf-8"))["texts"]
        docs, source = texts * 1000, "golden texts x1000"
    docs = docs[:2000] if quick else docs
    tokenizer = get_tokenizer(shipped("tokenizer"))
    seconds = median_seconds(lambda: tokenizer(docs), 3 if quick else 5, 1)
    return {f"kobert fast, batch ({len(docs):,} docs, {source})": len(docs) / seconds}


def run_bench(quick: bool = False, rounds: int | None = None, calls: int | None = None,
              progress=None) -> BenchResult:
    """The whole benchmark; `quick` (tiny preset, 2 rounds of 2 calls) fits in CI time."""
    from kobert.checkpoint import init_checkpoint, load_checkpoint
    from kobert.config import preset

    name = "tiny" if quick else "base"
    rounds = rounds or (2 if quick else 3)
    calls = calls or (2 if quick else 3)
    warmup = 1
    with tempfile.TemporaryDirectory(prefix="kobert-bench-") as tmp:
        tmp = Path(tmp)
        checkpoint = init_checkpoint(preset(name).with_head("sequence_classification", 2), tmp / "checkpoint", seed=0)
        weights = load_checkpoint(checkpoint).weights
        result = bench_model(weights, f"KoBERT-{name} (random init, 2-label head)", rounds, warmup, calls,
                             tmp / "export", progress)
        shipped_model = Path(__file__).parent / "assets" / "model"
        if quick:
            result.notes.append("shipped default not measured in --quick")
        elif (shipped_model / "config.json").is_file():
            result.others.append(bench_model(load_checkpoint(shipped_model).weights, "shipped default",
                                             rounds, warmup, calls, tmp / "export-default", progress))
        else:
            result.notes.append(f"shipped default skipped: {shipped_model} does not exist")
    result.tokenizer_docs_per_s = bench_tokenizer(quick)
    return result


if __name__ == "__main__":
    if sys.argv[1:] != ["--worker"]:
        sys.exit("usage: python -m kobert.bench --worker  (one JSON request on stdin; see worker_main)")
    sys.exit(worker_main())
