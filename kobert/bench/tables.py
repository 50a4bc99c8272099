"""A benchmark's result: its figures (x torch, GFLOP/s, % of the GEMM ceiling, adapter overhead),
its Markdown tables and its JSON."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field

from kobert.bench.flops import gemm_flops, model_flops
from kobert.bench.measure import cpu_info, cpu_line
from kobert.bench.rows import SHAPES, TORCH_ROW

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
