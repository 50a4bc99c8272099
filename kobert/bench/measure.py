"""The machine and the clock: the CPU's model and flags, a call's median time, a process's memory.

Used beyond the benchmark too (the training log's session CPU, bf16 detection, benchmarks/).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


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


def median_seconds(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rss_mb(field_name: str) -> float | None:
    """This process's VmRSS or VmHWM (peak) from /proc/self/status, in MB; None where unreadable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
