"""Where ONNX Runtime spends its time: kernel time per op type, and the machine's sgemm ceiling.

    python benchmarks/ort_profile.py EXPORT_DIR [--artifact onnx] [--batch 32] [--length 128] [--runs 3] [--json FILE]

Part 1 runs the artifact with `SessionOptions.enable_profiling` and sums kernel
time per op type.  Part 2 times one MatMul of the model's FFN shape
((batch*length) x hidden x intermediate, 768 x 3072 at base) in ONNX Runtime and
in torch, in GFLOP/s: the ceiling the whole model can approach when MatMul
dominates; the whole model's GFLOP/s (`kobert.bench.model_flops`) is printed too.  --json writes both as
the result file the docs render (benchmarks/results/ort-profile-DATE.json, with date, CPU and command).
"""

import argparse
import collections
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def op_time_shares(model_path: Path, inputs: dict, runs: int) -> tuple[float, list[tuple[str, float]]]:
    """(ms per run, [(op type, share of kernel time)]) from ONNX Runtime's own profiler."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    session = onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    session.run(None, inputs)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, inputs)
        times.append(time.perf_counter() - start)
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    total = sum(per_op.values())
    return statistics.median(times) * 1e3, [(op, us / total) for op, us in per_op.most_common()]


def sgemm_gflops(rows: int, runs: int, k: int = 768, n: int = 3072) -> dict[str, float]:
    """GFLOP/s of one (rows x k) @ (k x n) float32 MatMul in ONNX Runtime and torch."""
    from kobert.runtimes import onnx as onnx_spoke
    from kobert.runtimes import torch as torch_spoke

    weight = np.random.default_rng(0).random((k, n), dtype=np.float32)
    x = np.random.default_rng(1).random((rows, k), dtype=np.float32)
    # The same GEMM-ceiling sessions `kobert bench` times, from each framework's own spoke.
    calls = {"onnxruntime MatMul": onnx_spoke.gemm_session(x, weight), "torch matmul": torch_spoke.gemm_session(x, weight)}
    flops = 2 * rows * k * n
    result = {}
    for name, call in calls.items():
        call()
        times = []
        for _ in range(max(runs, 5)):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        result[name] = flops / statistics.median(times) / 1e9
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--artifact", default="onnx")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write the result file the docs' table reads")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]

    from kobert.bench import make_inputs, model_flops
    from kobert.config import KoBertConfig

    manifest = json.loads((args.export_dir / "manifest.json").read_text())
    model_path = args.export_dir / manifest["artifacts"][args.artifact]["files"][0]
    inputs = make_inputs((args.batch, args.length), manifest["config"]["vocab_size"])
    ms, shares = op_time_shares(model_path, inputs, args.runs)
    config = KoBertConfig.from_hf_dict(manifest["config"])
    flops = model_flops(config, args.batch, args.length)
    print(f"{args.artifact} at batch {args.batch} x {args.length}: {ms:.1f} ms per run (median of {args.runs}), "
          f"{flops / ms / 1e6:.0f} GFLOP/s ({flops / 1e9:.1f} GFLOP per run)")
    print(f"{'op type':28s} {'kernel time':>11s}")
    for op, share in shares[:12]:
        print(f"{op:28s} {share * 100:10.1f}%")
    k, n = config.hidden_size, config.intermediate_size
    print(f"\nsgemm ceiling, ({args.batch * args.length} x {k}) @ ({k} x {n}) float32:")
    ceiling = sgemm_gflops(args.batch * args.length, args.runs, k, n)
    for name, gflops in ceiling.items():
        print(f"{name:28s} {gflops:8.0f} GFLOP/s")
    if args.json:
        from figures import stamp_here

        size = f"{config.num_hidden_layers} × {config.hidden_size}"
        record = {**stamp_here(load_at_start), "model": f"{size} ({args.artifact}), {args.batch} × {args.length}",
                  "ms_per_run": round(ms, 1), "model_gflops": round(flops / ms / 1e6, 1),
                  "sgemm_gflops": {name: round(g, 1) for name, g in ceiling.items()}, "ops": op_rows(shares)}
        args.json.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


def op_rows(shares: list[tuple[str, float]], smallest: float = 0.01) -> list[dict]:
    """Each op type with at least `smallest` of the kernel time, then the rest in one row."""
    rows = [{"op": op, "percent": round(100 * share, 1)} for op, share in shares if share >= smallest]
    rest = sum(share for _, share in shares if share < smallest)
    if rest:
        rows.append({"op": "the rest", "percent": round(100 * rest, 1)})
    return rows


if __name__ == "__main__":
    main()
