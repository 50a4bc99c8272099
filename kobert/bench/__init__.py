"""`kobert bench`: every runtime on the same inputs, each row in a process of its own.

How we measure:
- model: KoBERT-base shape, random init, sequence-classification head (2 labels);
  `--quick` uses the tiny preset. The shipped default (kobert/assets/model/) is
  measured too when it exists (not in --quick).
- shapes: batch x tokens in `SHAPES` (1 x 16, 1 x 128, 8 x 128, 32 x 128); random
  ids, full attention mask.
- one process per row: the parent exports every artifact, then starts
  `python -m kobert.bench --worker` once per row and round, and reads one JSON
  reply (see `worker.worker_main`). A worker imports one framework, loads one artifact,
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
  (`flops.model_flops`) and as % of that ceiling.
- MXNet's adapter talks to an MXNet worker process (numpy 2 here, MXNet needs
  numpy < 2), so its row includes the pipe round trip; the raw SymbolBlock time
  is measured inside that worker.
- memory: the peak RSS (VmHWM) of the row's worker process: interpreter,
  framework, model, and the calls (the MXNet worker's own peak given apart).
- export time: each exporter alone (no parity), wall clock, in the parent.

The package, one idea per module: `rows` (labels and shapes), `flops` (the FLOP model),
`measure` (the CPU, the clock, memory), `worker` (the framework-free worker protocol),
`tables` (`BenchResult`: figures, tables, JSON) and `run` (the parent: `run_bench`).
"""

from kobert.bench.flops import gemm_flops, model_flops
from kobert.bench.measure import CPU_FLAGS, cpu_info, cpu_line, median_seconds, rss_mb
from kobert.bench.rows import (FP32_GATES, GEMM_ROWS, MXNET_RAW_ROW, SHAPES, TORCH_ROW, XLA_ROW, fp32_rows,
                               runtime_rows)
from kobert.bench.run import bench_model, bench_tokenizer, run_bench, worker_requests
from kobert.bench.tables import BenchResult
from kobert.bench.worker import (WORKER_KINDS, WorkerError, gemm_operands, make_inputs, run_worker,
                                 time_interleaved, worker_main)

__all__ = ["BenchResult", "CPU_FLAGS", "FP32_GATES", "GEMM_ROWS", "MXNET_RAW_ROW", "SHAPES", "TORCH_ROW",
           "WORKER_KINDS", "WorkerError", "XLA_ROW", "bench_model", "bench_tokenizer", "cpu_info", "cpu_line",
           "fp32_rows", "gemm_flops", "gemm_operands", "make_inputs", "median_seconds", "model_flops", "rss_mb",
           "run_bench", "run_worker", "runtime_rows", "time_interleaved", "worker_main", "worker_requests"]
