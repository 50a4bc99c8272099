"""`kobert bench`: every runtime side by side in one process, on the same inputs.

How we measure:
- model: KoBERT-base shape, random init, sequence-classification head (2 labels);
  `--quick` uses the tiny preset. The shipped default (kobert/assets/model/) is
  measured too when it exists.
- shapes: latency at batch 1 x 16 and 1 x 128 tokens, throughput at 32 x 128;
  random ids, full attention mask.
- timing: every row loaded first, then the rows take turns call by call in a
  shuffled order (so drift of the machine hits every row alike), a short pause
  before each call so the previous row's spinning thread pool is idle;
  `time.perf_counter` around one call, warm-up calls first, the median of
  `repeats` (>= 5) calls per row. Every row is also given as a ratio to torch eager on the
  same inputs: "x torch" = torch time / row time (above 1 is faster than torch).
- adapters vs raw sessions: the kobert runtime (input checks, casts, output
  naming) against the framework's own session on the same file; overhead % =
  adapter / raw - 1.
- MXNet runs in a worker process (numpy 2 here, MXNet needs numpy < 2), so its
  rows include the pipe round-trip and its memory is not in ours.
- memory: peak RSS of this process (VmHWM from /proc/self/status, reset with
  /proc/self/clear_refs before each stage) minus RSS before the stage; native
  allocations (ONNX Runtime, TensorFlow) are included, which tracemalloc would miss.
- export time: each exporter alone (no parity), wall clock.
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SHAPES = {"latency b1 s16": (1, 16), "latency b1 s128": (1, 128), "throughput b32 s128": (32, 128)}


def runtime_rows() -> dict[str, tuple[str, str]]:
    """Row label -> (runtime, artifact), for every registry target with a bench label."""
    from kobert import registry

    return {t.bench_label: (t.runtime, t.name) for t in registry.TARGETS.values() if t.bench_label}


MXNET_RAW_ROW = "mxnet SymbolBlock (raw, timed inside the worker)"


@dataclass
class BenchResult:
    model: str
    repeats: int
    speed: dict[str, dict[str, float]] = field(default_factory=dict)  # row -> shape -> median seconds
    overhead: dict[str, dict[str, float]] = field(default_factory=dict)  # row -> shape -> adapter/raw - 1
    export_seconds: dict[str, float] = field(default_factory=dict)
    size_bytes: dict[str, int] = field(default_factory=dict)
    memory_mb: dict[str, float] = field(default_factory=dict)
    tokenizer_docs_per_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    others: list["BenchResult"] = field(default_factory=list)  # the shipped default, when measured

    def ratios(self) -> dict[str, dict[str, float]]:
        torch_row = self.speed.get("torch eager", {})
        return {row: {shape: torch_row[shape] / s for shape, s in by_shape.items() if shape in torch_row}
                for row, by_shape in self.speed.items()}

    def table(self) -> str:
        shapes = list(SHAPES)
        lines = [f"## {self.model} (median of {self.repeats}; ms, and x torch = torch time / row time)", "",
                 "| runtime | " + " | ".join(f"{s} ms | x torch" for s in shapes) + " |",
                 "|---|" + "---|---|" * len(shapes)]
        ratios = self.ratios()
        for row, by_shape in self.speed.items():
            cells = [f"{by_shape[s] * 1e3:.2f} | {ratios[row][s]:.2f}" if s in by_shape else "- | -" for s in shapes]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        if self.overhead:
            lines += ["", "| adapter vs raw session | " + " | ".join(f"{s} overhead %" for s in shapes) + " |",
                      "|---|" + "---|" * len(shapes)]
            for row, by_shape in self.overhead.items():
                lines.append(f"| {row} | " + " | ".join(f"{by_shape[s] * 100:+.1f}" if s in by_shape else "-"
                                                        for s in shapes) + " |")
        if self.export_seconds or self.size_bytes:
            lines += ["", "| artifact | export s | size MB | peak RSS delta MB (load + bench) |", "|---|---|---|---|"]
            for name in dict.fromkeys([*self.export_seconds, *self.size_bytes]):
                e = self.export_seconds.get(name)
                size = self.size_bytes.get(name)
                mem = self.memory_mb.get(name)
                lines.append(f"| {name} | {'-' if e is None else f'{e:.1f}'} | "
                             f"{'-' if size is None else f'{size / 1e6:.1f}'} | {'-' if mem is None else f'{mem:.0f}'} |")
        if self.tokenizer_docs_per_s:
            lines += ["", "| tokenizer | docs/s |", "|---|---|"]
            lines += [f"| {name} | {rate:,.0f} |" for name, rate in self.tokenizer_docs_per_s.items()]
        if self.notes:
            lines += [""] + [f"- {note}" for note in self.notes]
        text = "\n".join(lines)
        return "\n\n".join([text] + [other.table() for other in self.others])

    def to_dict(self) -> dict:
        return {"model": self.model, "repeats": self.repeats, "seconds": self.speed, "x_torch": self.ratios(),
                "adapter_overhead": self.overhead, "export_seconds": self.export_seconds,
                "size_bytes": self.size_bytes, "peak_rss_delta_mb": self.memory_mb,
                "tokenizer_docs_per_s": self.tokenizer_docs_per_s, "notes": self.notes,
                "others": [o.to_dict() for o in self.others]}


# --- measuring -------------------------------------------------------------------


def median_seconds(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _rss_mb(field_name: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def make_inputs(shape: tuple[int, int], vocab_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    ids = np.random.default_rng(seed).integers(5, vocab_size, size=shape, dtype=np.int64)
    ids[:, 0] = 2  # [CLS]
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def _export_all(weights, export_dir: Path, targets, result: BenchResult) -> dict:
    """Each exporter timed alone; the manifest runtimes need, without parity."""
    import json

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


def _load_rows(weights, workdir: Path, manifest: dict, inputs: dict, result: BenchResult,
               stack: contextlib.ExitStack) -> tuple[dict, dict]:
    """Every row as label -> callable(shape name); runtimes stay open until `stack` closes.

    Also rows read off another row's calls, label -> (row, callable() -> seconds):
    the MXNet SymbolBlock's own time inside the worker, per adapter call.

    Memory per artifact: peak RSS while it loads and runs each shape once, minus RSS before.
    """
    from kobert import runtimes

    reference = stack.enter_context(runtimes.load(workdir, runtime="torch", verify=False))
    rows = {"torch eager": _raw_row(reference, inputs)}
    inner_timers = {}  # label -> (row, seconds of that row's last call spent inside the framework)
    for row, (runtime_name, artifact) in runtime_rows().items():
        if artifact not in manifest["artifacts"]:
            continue
        before = _rss_mb("VmRSS")
        peak_reset = _reset_peak()
        try:
            runtime = stack.enter_context(runtimes.load(workdir, runtime=runtime_name, artifact=artifact, verify=False))
        except Exception as e:
            result.notes.append(f"{row}: could not load ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
            continue
        rows[row] = lambda shape, r=runtime: r.run(**inputs[shape])
        if runtime_name == "mxnet":  # its raw session lives in the worker, which times each call itself
            inner_timers[MXNET_RAW_ROW] = (row, lambda r=runtime: r.last_forward_seconds)
        try:
            rows[row + " (raw session)"] = _raw_row(runtime, inputs)
        except NotImplementedError:
            pass
        if hasattr(runtime, "xla_session"):
            rows["tensorflow XLA (jit_compile)"] = _raw_row(runtime, inputs, runtime.xla_session())
        for shape in SHAPES:
            rows[row](shape)
        peak = _rss_mb("VmHWM")
        if peak_reset and before is not None and peak is not None:
            result.memory_mb[artifact] = peak - before
    return rows, inner_timers


def _time_round_robin(rows: dict, inner_timers: dict, repeats: int, warmup: int,
                      settle: float) -> dict[str, dict[str, float]]:
    """Median seconds per row and shape, the rows taking turns call by call.

    Taking turns spreads any drift of the machine over every row alike, so the
    ratios compare like with like.  Before each timed call we sleep `settle`
    seconds: thread pools (OpenMP, ONNX Runtime, TensorFlow) spin for a while
    after a call and would otherwise steal the next row's cores.  The order is
    shuffled every round (fixed seed): measured here, the call right after
    another framework's call can be 2x slower, and a fixed order would always
    charge that to the same row.
    """
    labels = [*rows, *inner_timers]
    speed = {label: {} for label in labels}
    order = list(rows)
    shuffle = random.Random(0).shuffle
    for shape in SHAPES:
        for call in rows.values():
            for _ in range(warmup):
                call(shape)
        times = {label: [] for label in labels}
        for _ in range(repeats):
            shuffle(order)
            for row in order:
                call = rows[row]
                time.sleep(settle)
                start = time.perf_counter()
                call(shape)
                times[row].append(time.perf_counter() - start)
                for label, (source, seconds) in inner_timers.items():
                    if source == row:
                        times[label].append(seconds())
        for label in labels:
            speed[label][shape] = statistics.median(times[label])
    return speed


def bench_model(weights, label: str, repeats: int, warmup: int, settle: float, workdir: Path) -> BenchResult:
    result = BenchResult(label, repeats)
    manifest = _export_all(weights, workdir, [artifact for _, artifact in runtime_rows().values()], result)
    inputs = {name: make_inputs(shape, weights.config.vocab_size) for name, shape in SHAPES.items()}
    if not _reset_peak():
        result.notes.append("peak memory not measured: /proc/self/clear_refs is not writable here")
    with contextlib.ExitStack() as stack:
        rows, inner_timers = _load_rows(weights, workdir, manifest, inputs, result, stack)
        result.speed = _time_round_robin(rows, inner_timers, repeats, warmup, settle)
    for row, (runtime_name, _) in runtime_rows().items():
        raw_row = MXNET_RAW_ROW if runtime_name == "mxnet" else row + " (raw session)"
        if row in result.speed and raw_row in result.speed:
            result.overhead[row] = {s: result.speed[row][s] / result.speed[raw_row][s] - 1 for s in SHAPES}
    result.notes.append(f"rows timed in turn, call by call, {settle:g} s pause before each call; "
                        f"threads: torch, onnxruntime and tensorflow defaults, "
                        f"tflite {os.cpu_count()}, mxnet OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', os.cpu_count())}; "
                        f"{os.cpu_count()} CPUs visible")
    result.notes.append("memory column: peak RSS (VmHWM) minus RSS before loading, per runtime (load + warm-up); "
                        "the MXNet worker's memory is in another process and not counted")
    return result


def _raw_row(runtime, inputs: dict, session=None):
    """The framework's own call on pre-converted inputs: a callable(shape name)."""
    session = session or runtime.raw_session()
    feeds = {shape: runtime.raw_feed(x) for shape, x in inputs.items()}
    return lambda shape: session(feeds[shape])


def bench_tokenizer(quick: bool) -> dict[str, float]:
    from kobert.checkpoint import shipped
    from kobert.tokenizer import get_tokenizer

    from kobert.datasets import default_nsmc_dir, read_nsmc

    nsmc = default_nsmc_dir() / "ratings_test.txt"
    if nsmc.is_file():
        docs, source = read_nsmc(nsmc).texts, "NSMC test"
    else:
        import json

        texts = json.loads((shipped("tokenizer").parent / "golden_inputs.json").read_text(encoding="utf-8"))["texts"]
        docs, source = texts * 1000, "golden texts x1000"
    docs = docs[:2000] if quick else docs
    tokenizer = get_tokenizer(shipped("tokenizer"))
    seconds = median_seconds(lambda: tokenizer(docs), 3 if quick else 5, 1)
    return {f"kobert fast, batch ({len(docs):,} docs, {source})": len(docs) / seconds}


def run_bench(quick: bool = False, repeats: int | None = None, settle: float | None = None) -> BenchResult:
    """The whole benchmark; `quick` (tiny preset, 5 repeats, 2 warm-up calls) fits in CI time."""
    from kobert.checkpoint import init_checkpoint, load_checkpoint
    from kobert.config import preset

    name = "tiny" if quick else "base"
    repeats = repeats or (5 if quick else 7)
    warmup = 2
    settle = settle if settle is not None else 0.1 if quick else 0.3
    with tempfile.TemporaryDirectory(prefix="kobert-bench-") as tmp:
        tmp = Path(tmp)
        checkpoint = init_checkpoint(preset(name).with_head("sequence_classification", 2), tmp / "checkpoint", seed=0)
        weights = load_checkpoint(checkpoint).weights
        result = bench_model(weights, f"KoBERT-{name} (random init, 2-label head)", repeats, warmup, settle,
                             tmp / "export")
        shipped_model = Path(__file__).parent / "assets" / "model"
        if quick:
            result.notes.append("shipped default not measured in --quick")
        elif (shipped_model / "config.json").is_file():
            result.others.append(bench_model(load_checkpoint(shipped_model).weights, "shipped default",
                                             repeats, warmup, settle, tmp / "export-default"))
        else:
            result.notes.append(f"shipped default skipped: {shipped_model} does not exist")
    result.tokenizer_docs_per_s = bench_tokenizer(quick)
    return result
