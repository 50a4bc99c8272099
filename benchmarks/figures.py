"""The benchmark and task tables of the docs, rendered from the committed result files (one source).

    python benchmarks/figures.py            rewrite every generated block in README.md and docs/
    python benchmarks/figures.py --check    exit 1, naming each block, if a page differs from its JSON
    python benchmarks/figures.py import-bench runs/bench.json            kobert bench --json -> results/
    python benchmarks/figures.py import-throughput runs/throughput.json  throughput.py --json -> results/
    python benchmarks/figures.py import-tasks runs/task --checkpoint "..."  kobert finetune + eval --json -> results/

A page asks for a table with a marker pair; everything between the two lines is this script's:

    <!-- figures: bench-base-ms -->
    <!-- /figures -->

Every result file in benchmarks/results/ says where its figures came from: `date`, `cpu`, `command`,
and, for figures copied from an earlier README rather than written by the tool, a `source` line saying
so and which command re-measures them. The tables print those with every table, so a figure
never appears without its machine and command.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^(<!-- figures: ([\w-]+) -->\n)(.*?)^(<!-- /figures -->)", re.S | re.M)
SHAPES = ["b1 s16", "b1 s128", "b8 s128", "b32 s128"]
BENCH = "bench-2026-12-06.json"  # `kobert bench --json`: every row at KoBERT-base, then the shipped default
BENCH_TIERS = "bench-tiers-2026-12-06.json"  # `kobert bench --targets ... --skip-default`: the fast tiers at KoBERT-base
THROUGHPUT = "throughput-2026-12-06.json"  # `throughput.py --sweep`: every runtime, then the sweep
TIERS = "throughput-tiers-2026-12-06.json"  # `throughput.py --logits-only`: the fast tiers side by side
TASKS = "tasks-2026-12-05.json"
ORT_PROFILE = "ort-profile-2026-12-06.json"  # benchmarks/ort_profile.py --json


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def n(x, digits: int | None = None) -> str:
    """A figure as stored (JSON keeps 137.0 as 137.0, 915 as 915), or with fixed decimals; None is '-'."""
    if x is None:
        return "-"
    return f"{x:,.{digits}f}" if digits is not None else f"{x:,}"


def md(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def provenance(data: dict, name: str) -> str:
    when = data.get("date") or "date not recorded"
    line = f"*From `benchmarks/results/{name}`: {when}; CPU: {data['cpu']}; command: `{data['command']}`.*"
    if data.get("source", "").startswith("transcribed"):  # `kobert eval --json` says "written by the command"
        line += f" *Note: {data['source']}.*"
    return line


# --- kobert bench ----------------------------------------------------------------------------------


def bench_base_ms() -> list[str]:
    data = load(BENCH)
    base = data["models"][0]
    header = ["row"] + [h for s in SHAPES for h in (f"{s} ms", "× torch")]
    rows = []
    for label, by_shape in _adapter_rows(base["rows"]).items():
        cells = [label]
        for s in SHAPES:
            c = by_shape[s]
            cells += [f"{n(c['ms'])} [{n(c['min_ms'])}–{n(c['max_ms'])}]", n(c["x_torch"], 2)]
        rows.append(cells)
    config = f" ({base['config']})" if base["config"] else ""
    return [f"**{base['model']}**{config}, {data['machine']}. Milliseconds per call, median over "
            f"{data['rounds']} rounds [min–max over rounds]; × torch = torch eager time / row time.", "",
            *md(header, rows), "", provenance(data, BENCH)]


def _is_fp32(by_shape: dict) -> bool:
    """A row measured against the fp32 GEMM ceiling: `kobert bench` gives a % of it to the fp32 rows only."""
    return all(by_shape[s].get("percent_of_ceiling") is not None for s in SHAPES)


def _adapter_rows(rows: dict) -> dict:
    """The rows as kobert runs them: each framework's raw session on the same file (the adapter overhead
    check) stays in the JSON and the printed output."""
    return {label: by_shape for label, by_shape in rows.items() if "(raw" not in label}


def bench_base_gflops() -> list[str]:
    data = load(BENCH)
    base = data["models"][0]
    fp32 = {label: by_shape for label, by_shape in _adapter_rows(base["rows"]).items() if _is_fp32(by_shape)}
    # The goal's shapes (batch 8 and 32): the best fp32 model row in bold.
    best = {s: max(fp32, key=lambda r: fp32[r][s]["percent_of_ceiling"]) for s in ("b8 s128", "b32 s128")}
    header = [f"fp32 row ({base['model']})"] + [h for s in SHAPES for h in (f"{s} GFLOP/s", "% ceiling")]
    rows = []
    for label, by_shape in [*base["gemm_rows"].items(), *fp32.items()]:
        name = f"{label} ({base['gemm_shape']})" if label == next(iter(base["gemm_rows"])) else label
        cells = [name]
        for s in SHAPES:
            g, p = n(by_shape[s]["gflops"]), n(by_shape[s]["percent_of_ceiling"])
            cells += [f"**{g}**", f"**{p}**"] if best.get(s) == label else [g, p]
        rows.append(cells)
    flops = " / ".join(n(base["model_gflop"][s]) for s in SHAPES)
    return [*md(header, rows), "",
            f"Model FLOPs: {flops} GFLOP at {' / '.join(SHAPES)}. The ceiling is the best of the three GEMM rows "
            "at the same token count.", "", provenance(data, BENCH)]


def bench_default_x() -> list[str]:
    data = load(BENCH)
    model = data["models"][1]
    rows = []
    for label, by_shape in _adapter_rows(model["rows"]).items():
        if label == "torch eager":
            rows.append([f"{label} (ms)"] + [n(by_shape[s]["ms"]) for s in SHAPES])
        else:
            rows.append([label] + [f"{n(by_shape[s]['x_torch'], 2)}×" for s in SHAPES])
    config = f" ({model['config']})" if model["config"] else ""
    return [f"**The {model['model']}**{config}, same run, × torch:", "", *md(["row", *SHAPES], rows), "",
            provenance(data, BENCH)]


def bench_rss() -> list[str]:
    data = load(BENCH)
    base = data["models"][0]
    rows = [[name, n(mb)] for name, mb in base["peak_rss_mb"].items()]
    return [*md([f"{base['model']}: each row's own worker process", "peak RSS MB"], rows), "", provenance(data, BENCH)]


def bench_goals() -> list[str]:
    data = load(BENCH)
    base, default = data["models"][0]["rows"], data["models"][1]["rows"]

    def x(rows, label, shapes=("b1 s128", "b32 s128")):
        return [rows[label][s]["x_torch"] for s in shapes]

    def pair(values):
        return " / ".join(f"{v:.2f}×" for v in values)

    def status(values, want):
        return "met" if min(values) >= want else "**not met**"

    goals = [("ONNX Runtime fp32 ≥ 1.8× torch", base, "onnxruntime fp32", 1.8),
             ("ONNX Runtime int8 ≥ 3× torch", base, "onnxruntime int8", 3.0),
             ("TFLite int8 ≥ 3× torch (the other int8 tier)", base, "tflite int8", 3.0),
             ("TensorFlow ≥ 1.0× torch", base, "tensorflow", 1.0),
             ("TensorFlow ≥ 1.0× torch, shipped default", default, "tensorflow", 1.0),
             ("MXNet ≥ 1.0× torch", base, "mxnet (worker IPC)", 1.0)]
    rows = [[goal, pair(x(rows, label)), status(x(rows, label), want)] for goal, rows, label, want in goals]
    shapes = ("b8 s128", "b32 s128")
    torch = [base["torch eager"][s]["percent_of_ceiling"] for s in shapes]
    others = [base[r][s]["percent_of_ceiling"] for r in _adapter_rows(base) if r != "torch eager" and _is_fp32(base[r])
              for s in shapes]
    meeting = [r for r in _adapter_rows(base) if _is_fp32(base[r])
               and min(base[r][s]["percent_of_ceiling"] for s in shapes) >= 90]
    rows.append(["fp32 rows at batch 8 / 32 ≥ 90 % of the GEMM ceiling",
                 f"torch {torch[0]} % / {torch[1]} %; the others {min(others)}–{max(others)} %",
                 f"met by {', '.join(meeting)}" if meeting else "**not met**"])
    return [*md(["goal (KoBERT-base unless named)", "measured (b1 s128 / b32 s128)", "status"], rows), "",
            provenance(data, BENCH)]


def bench_tiers() -> list[str]:
    """The fast tiers at KoBERT-base, ms and × torch per shape, and the OpenVINO int8 goal at 8 × 128."""
    data = load(BENCH_TIERS)
    base = data["models"][0]
    header = ["row"] + [h for s in SHAPES for h in (f"{s} ms", "× torch")]
    rows = [[label] + [c for s in SHAPES for c in (n(by_shape[s]["ms"]), n(by_shape[s]["x_torch"], 2))]
            for label, by_shape in base["rows"].items() if not label.endswith("(raw session)")]  # those: the JSON
    goal = base["rows"].get("openvino int8", {}).get("b8 s128", {}).get("x_torch")
    verdict = ("not measured" if goal is None else f"{goal:.2f}×: " + ("met" if goal >= 4 else "**missed**"))
    return [f"**{base['model']}**, {data['machine']}. Milliseconds per call, median over {data['rounds']} rounds; "
            "× torch = torch eager fp32 time / row time.", "", *md(header, rows), "",
            f"Goal: OpenVINO int8 ≥ 4× torch eager fp32 at b8 s128. Measured {verdict}.", "",
            provenance(data, BENCH_TIERS)]


def ort_profile() -> list[str]:
    name = ORT_PROFILE
    data = load(name)
    ceiling = ", ".join(f"{label} {n(g, 0)}" for label, g in data["sgemm_gflops"].items())
    return [f"{data['model']}: {n(data['ms_per_run'], 1)} ms per run, {n(data['model_gflops'], 0)} GFLOP/s for the "
            f"whole model; one MatMul of the FFN's shape alone (the sgemm ceiling): {ceiling} GFLOP/s; "
            f"{data['machine']}.", "",
            *md(["op type", "kernel time"], [[op["op"], f"{n(op['percent'], 1)} %"] for op in data["ops"]]), "",
            provenance(data, name)]


# --- benchmarks/throughput.py ----------------------------------------------------------------------


def throughput() -> list[str]:
    data = load(THROUGHPUT)
    rows = []
    for label, r in data["rows"].items():
        pair = isinstance(r["docs_per_s"], list)
        docs = " / ".join(n(v) for v in r["docs_per_s"]) if pair else n(r["docs_per_s"])
        rss = " / ".join(n(v) for v in r["peak_rss_mb"]) if pair else n(r["peak_rss_mb"])
        if r.get("peak_rss_note"):
            rss += f" ({r['peak_rss_note']})"
        check = (f"{n(r['accuracy_percent'], 2)} %" if "accuracy_percent" in r
                 else n(r["min_cosine"], 6) if "min_cosine" in r else "-")
        st = "" if r["x_sentence_transformers"] is None else n(r["x_sentence_transformers"], 2)
        rows.append([label, docs, n(r["x_pipeline"], 2), st, n(r["tokenizing_percent"], 1), rss, check])
    header = [f"row ({data['docs']:,} reviews)", "docs/s", "× pipeline", "× sentence-transformers", "tokenizing %",
              "peak RSS MB", "accuracy / min cosine vs torch"]
    lead = ", ".join(part for part in (f"Batch {data['batch_size']}", data.get("note")) if part)
    return [f"{lead}; {data['machine']}.", "", *md(header, rows), "", provenance(data, THROUGHPUT)]


def throughput_sweep() -> list[str]:
    data = load(THROUGHPUT)
    windows = sorted({c["window_batches"] for c in data["sweep"]})
    best = max(data["sweep"], key=lambda c: c["docs_per_s"])
    rows = []
    for batch in sorted({c["batch"] for c in data["sweep"]}):
        cells = [str(batch)]
        for w in windows:
            c = next(c for c in data["sweep"] if c["batch"] == batch and c["window_batches"] == w)
            rate = f"{n(c['docs_per_s'])} docs/s"
            cells.append(f"**{rate}**, {n(c['peak_rss_mb'])} MB" if c is best else f"{rate}, {n(c['peak_rss_mb'])} MB")
        rows.append(cells)
    return [*md(["batch", *[f"window {w} batches" for w in windows]], rows), "", provenance(data, THROUGHPUT)]


def throughput_goals() -> list[str]:
    return goal_rows(THROUGHPUT)


def throughput_tiers() -> list[str]:
    data = load(TIERS)
    rows = data["rows"]
    torch = rows.get("rt.logits torch/reference")
    table = []
    for label, r in rows.items():
        vs_torch = n(r["docs_per_s"] / torch["docs_per_s"], 2) if torch else "-"
        agreement = f"{n(r['agreement_percent'], 2)} %" if "agreement_percent" in r else "-"
        accuracy = f"{n(r['accuracy_percent'], 2)} %" if "accuracy_percent" in r else "-"
        table.append([label, n(r["docs_per_s"]), n(r["x_pipeline"], 2), vs_torch, n(r["tokenizing_percent"], 1),
                      n(r["peak_rss_mb"]), accuracy, agreement])
    header = [f"row ({data['docs']:,} reviews)", "docs/s", "× pipeline", "× torch fp32", "tokenizing %", "peak RSS MB",
              "accuracy", "labels as torch's"]
    return [f"Batch {data['batch_size']}; {data['machine']}.", "", *md(header, table), "", provenance(data, TIERS)]


def throughput_tier_goals() -> list[str]:
    return goal_rows(TIERS)


def goal_rows(name: str) -> list[str]:
    """The goals as `throughput.py` judged them in the run that wrote the file (`goals`)."""
    data = load(name)
    table = [[g["goal"].replace(">=", "≥").replace("<=", "≤"), g["measured"],
              g["status"] if g["status"] == "met" else f"**{g['status']}**"] for g in data["goals"]]
    return [*md(["goal", "measured", "status"], table), "", provenance(data, name)]


# --- tokenizer, eval, deployment ---------------------------------------------------------------------


def tokenizer_libraries() -> list[str]:
    name = "tokenizer-bench.json"
    data = load(name)
    rows = [[label, n(r["docs_per_s"]), f"{n(r['x_sentencepiece'], 2)}×"] for label, r in data["libraries"].items()]
    lead = [f"{data['documents']}; {data['machine']}.", ""] if "documents" in data else []
    return [*lead, *md(["tokenizer", "documents/s", "vs sentencepiece"], rows), "", provenance(data, name)]


def tokenizer_pipeline() -> list[str]:
    name = "tokenizer-bench.json"
    data = load(name)
    rows = [[label, n(r["docs_per_s"]), n(r["us_per_doc"]), r["step_cost"]] for label, r in data["pipeline"].items()]
    return [*md(["our pipeline", "documents/s", "µs per document", "what the step costs"], rows), "",
            provenance(data, name)]


def eval_nsmc_default() -> list[str]:
    name = "eval-nsmc-default.json"
    data = load(name)
    rows = [[r["runtime"], f"{n(r['accuracy_percent'], 2)} %", f"{n(r['agreement_percent'], 3)} %", n(r["seconds"], 1)]
            for r in data["results"]]
    header = ["runtime", f"accuracy ({data['examples']:,} reviews)", "agreement with torch", "seconds"]
    return [*md(header, rows), "", provenance(data, name)]


def _task_cell(task: dict) -> str:
    m = task["metrics"]
    if "entity_f1" in m:
        return f"{n(m['entity_f1'], 2)} (P {n(m['precision'], 2)}, R {n(m['recall'], 2)})"
    if "exact_match" in m:
        return f"{n(m['exact_match'], 2)} / {n(m['f1'], 2)} ({task['examples']:,} questions)"
    value = next(iter(m.values()))
    cell = f"{n(value, 2)} %" if "accuracy" in m else n(value, 2)
    return f"{cell} ({task['note']})" if task.get("note") else cell


def tasks() -> list[str]:
    name = TASKS
    data = load(name)
    rows = []
    for t in data["tasks"]:
        tuning = "" if t["finetune"] is None else f"{t['finetune']}, {t['finetune_seconds']:,} s"
        rows.append([t["task"], t["data"], t["published"] or "—", _task_cell(t), f"{n(t['agreement_percent'], 3)} %",
                     tuning])
    header = ["task", "metric", "KoBERT published", "ours: " + " = ".join(data["runtimes"]), "agreement",
              "fine-tuning (wall, 2 CPUs)"]
    return [f"Fine-tuned from {data['checkpoint']}.", "", *md(header, rows), "", provenance(data, name)]


def web_bench() -> list[str]:
    name = "web-bench.json"
    data = load(name)
    rows = [[r["runtime"], n(r["ms_per_call"], 1), r["max_abs_all"], r["max_abs_same_ids"], r["same_ids"]]
            for r in data["rows"]]
    header = ["runtime", "ms per call", "max-abs logits vs torch, all", "the same, texts with kobert's ids",
              "reviews with kobert's ids"]
    return [f"{data['machine']}.", "", *md(header, rows), "", provenance(data, name)]


def mms_bench() -> list[str]:
    name = "mms-bench.json"
    data = load(name)
    runs = data["runs"]
    per_batch = [r["clients4_mean_requests_per_worker_batch"] for r in runs]
    rows = [["worker ready (synchronous registration: unpack, worker start, model load, warm-up)",
             *[f"{r['worker_ready_ms'] / 1000:.2f} s" for r in runs]],
            ["one text per request (`{\"text\"}`, batch size 1)", *[f"{r['single_median_ms']:.1f} ms" for r in runs]],
            ["eight texts per request (`{\"texts\"}`)", *[f"{r['batch8_median_ms']:.1f} ms" for r in runs]],
            ["4 concurrent clients, registered with batch_size 4: latency / throughput",
             *[f"{r['clients4_batch_size4_median_ms']:.1f} ms / {r['clients4_requests_per_s']:.0f} req/s "
               f"({n(b, 1)} requests per worker batch)" for r, b in zip(runs, per_batch)]],
            [f"max-abs logits vs torch reference / vs `kobert run --runtime mxnet` ({runs[0]['replies_compared']} "
             "replies)", *[f"{r['max_abs_vs_torch']:.1e} / {r['max_abs_vs_mxnet_runtime']:.1e}" for r in runs]]]
    return [f"{data['machine']}; {data['cpu']}.", "", *md(["", *[f"run {i + 1}" for i in range(len(runs))]], rows), "",
            provenance(data, name)]


def spark_bulk() -> list[str]:
    name = "spark-bulk.json"
    data = load(name)
    rows = [[r["how"], n(r["seconds"], 1), n(r["rows_per_s"]), n(r["ratio"], 2), r["labels_agree"],
             ", ".join(map(str, r["peak_rss_mib"])) or "-"] for r in data["rows"]]
    header = ["command", "wall s", "rows/s", "ratio (wall ÷ kobert run's)", "labels agree", "peak RSS MiB per executor"]
    return [f"{data['reviews']:,} NSMC test reviews, `{data['runtime']}`, one run each; Spark {data['spark']}; "
            f"{data['machine']}.", "", *md(header, rows), "", provenance(data, name)]


def keras_nsmc() -> list[str]:
    """benchmarks/keras_nsmc.py's JSON: Keras `fit` against `kobert finetune`, same slice and recipe."""
    name = "keras-nsmc.json"
    data = load(name)
    rows = [[recipe, n(r["accuracy"], 2), n(r["train_seconds"]), n(r["wall_seconds"]), n(r["steps"]), r["precision"]]
            for recipe, r in (("Keras (`model.fit`)", data["keras"]), ("torch (`kobert finetune`)", data["torch"]))]
    gap = data["difference_points"]
    verdict = "within" if abs(gap) <= 0.5 else "**outside**"
    return [*md(["recipe", "accuracy %", "train s", "wall s", "steps", "precision"], rows), "",
            f"Keras − torch: {gap:+.2f} points on the same {data['keras']['eval_examples']:,} test reviews, "
            f"{verdict} the 0.5-point bar" + (f"; {data['machine']}." if data.get("machine") else "."), "",
            provenance(data, name)]


def tf_text_bench() -> list[str]:
    """benchmarks/tf_text_bench.py's JSON: the tf-text SavedModel on NSMC reviews, both paths side by side."""
    name = "tf-text-bench.json"
    data = load(name)
    seconds, ids, reviews = data["seconds"], data["ids"], data["reviews"]
    table = [
        [f"{reviews:,} reviews, text to logits", f"text in the graph (`serving_default`) {seconds['text_in_the_graph']:.2f} s; "
         f"kobert's tokenizer + `serving_ids` {seconds['python_tokenizer_then_serving_ids']:.2f} s"],
        ["tokenizing alone", f"in the graph (`tokenize`) {1000 * seconds['tokenize_in_the_graph']:.0f} ms; "
         f"kobert's tokenizer {1000 * seconds['tokenize_in_python']:.0f} ms"],
        ["ids, review by review", f"equal to kobert's tokenizer's on {ids['ids_equal']:,}; the same pieces in another "
         f"order on {ids['same_pieces_other_order']:,} (exact score ties); other differences {ids['other_difference']:,}; "
         f"equal to Python sentencepiece's on {ids['equal_to_sentencepiece']:,}"],
        ["labels", f"{data['labels_equal']:,} of {reviews:,} equal between the two paths"],
        ["SavedModel size", f"{data['savedmodel_mb']['tf-text']} MB (the `tf` SavedModel: {data['savedmodel_mb']['tf']} MB)"],
    ]
    lead = data["machine"][:1].upper() + data["machine"][1:]
    return [f"{lead}.", "", *md(["", "figure"], table), "", provenance(data, name)]


def headline() -> list[str]:
    """README's one line per figure, each linking to its page (README-relative links)."""
    nsmc, tp = load("eval-nsmc-default.json"), load(TIERS)
    accuracies = {r["accuracy_percent"] for r in nsmc["results"]}
    agreement = min(r["agreement_percent"] for r in nsmc["results"])
    rows = tp["rows"]
    fastest = sorted(((r["x_pipeline"], label) for label, r in rows.items()
                      if label.startswith("rt.logits") and r["x_pipeline"]), reverse=True)[:2]
    return [f"- **Tasks**: the shipped default classifies NSMC's {nsmc['examples']:,} test reviews at "
            f"{' / '.join(f'{a:.2f} %' for a in sorted(accuracies))} in "
            f"{', '.join(r['runtime'] for r in nsmc['results'])}, {agreement:.3f} % agreement with torch; "
            "every Korean task's table: [tasks](docs/tasks.md).",
            f"- **Speed**: on {tp['docs']:,} NSMC reviews (2 CPU cores) "
            + ", ".join(f"`{label}` runs {x:.2f}×" for x, label in fastest)
            + f" the transformers pipeline, ONNX Runtime fp32 {rows['rt.logits onnx/onnx']['x_pipeline']:.2f}× "
              f"({tp['cpu'].split(',')[0]}): [benchmarks](docs/benchmarks.md) (with how we measure).",
            f"- *Figures from `benchmarks/results/` ({tp['date']}); regenerated by `python benchmarks/figures.py`.*"]


TABLES = {
    "bench-base-ms": bench_base_ms, "bench-base-gflops": bench_base_gflops, "bench-default-x": bench_default_x,
    "bench-rss": bench_rss, "bench-goals": bench_goals, "bench-tiers": bench_tiers, "ort-profile": ort_profile,
    "throughput": throughput, "throughput-sweep": throughput_sweep, "throughput-goals": throughput_goals,
    "throughput-tiers": throughput_tiers, "throughput-tier-goals": throughput_tier_goals,
    "tokenizer-libraries": tokenizer_libraries, "tokenizer-pipeline": tokenizer_pipeline,
    "eval-nsmc-default": eval_nsmc_default, "headline": headline, "tasks": tasks, "web-bench": web_bench, "mms-bench": mms_bench,
    "spark-bulk": spark_bulk, "keras-nsmc": keras_nsmc, "tf-text-bench": tf_text_bench,
}


def render(name: str) -> str:
    if name not in TABLES:
        raise KeyError(f"unknown figures block {name!r}; known: {', '.join(TABLES)}")
    return "\n".join(TABLES[name]()) + "\n"


def update(text: str) -> str:
    return BLOCK.sub(lambda m: m[1] + render(m[2]) + m[4], text)


def stale_blocks(pages=PAGES) -> list[str]:
    """'page: block' for every generated block whose text differs from what the JSON renders."""
    return [f"{page.relative_to(REPO)}: {m[2]}" for page in pages
            for m in BLOCK.finditer(page.read_text(encoding="utf-8")) if m[3] != render(m[2])]


# --- from the tools' own JSON to a result file -------------------------------------------------------


def _stamp(raw: dict, command: str) -> dict:
    return {"date": datetime.date.today().isoformat(), "command": command, "cpu": _cpu_text(raw.get("cpu", {}))}


def stamp_here(load_at_start: float, setting: str = "") -> dict:
    """date, this CPU, the running command and the load around it (after `setting`, what was measured how):
    what a benchmark script writes beside its figures (`--json`), so its result file needs no import step."""
    from kobert.bench.measure import cpu_info

    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    command = " ".join([".venv/bin/python", str(shown), *map(shlex.quote, sys.argv[1:])])
    load = f"1-minute load average {load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    return {**_stamp({"cpu": cpu_info()}, command), "machine": f"{setting}; {load}" if setting else load}


def _cpu_text(cpu) -> str:
    """`cpu_info()` as `kobert bench` prints it (model, CPUs, the flags that decide the fast paths), without "CPU: "."""
    if not isinstance(cpu, dict):
        return cpu
    if str(REPO) not in sys.path:  # run as `python benchmarks/figures.py` from a checkout
        sys.path.insert(0, str(REPO))
    from kobert.bench.measure import cpu_line

    return cpu_line(cpu).removeprefix("CPU: ")


def import_bench(raw: dict, command: str) -> dict:
    """`kobert bench --json` (BenchResult.to_dict) -> the result-file shape the tables read."""

    def model(result: dict) -> dict:
        rows, gemm = {}, {}
        for label, by_shape in result["rows"].items():
            target = gemm if label in result["gemm_rows"] else rows
            target[label] = {}
            for s, c in by_shape.items():
                batch = result["shapes"][s][0]
                ms = [round(1e3 * c[k], 1 if batch == 1 else None) for k in ("median_s", "min_s", "max_s")]
                cell = {"gflops": None if c["gflops"] is None else round(c["gflops"], 1),
                        "percent_of_ceiling": None if c["percent_of_ceiling"] is None else round(c["percent_of_ceiling"])}
                if label not in result["gemm_rows"]:
                    cell = {"ms": ms[0], "min_ms": ms[1], "max_ms": ms[2],
                            "x_torch": result["x_torch"].get(label, {}).get(s), **cell}
                target[label][s] = cell
        shape = result["gemm_shape"][SHAPES[-1]]
        return {"model": result["model"], "config": "", "model_gflop": {s: float(f"{f / 1e9:.3g}") for s, f in
                                                                        result["model_flops"].items()},
                "gemm_shape": f"tokens × {shape[1]} × {shape[2]}", "rows": rows, "gemm_rows": gemm,
                "peak_rss_mb": {k: round(v) for k, v in result["peak_rss_mb"].items()}}

    load_avg = raw.get("load_average", {})
    return {**_stamp(raw, command), "machine": "1-minute load average " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                                                       load_avg.items()),
            "rounds": raw["rounds"], "calls_per_round": raw["calls_per_round"], "shapes": SHAPES,
            "models": [model(raw)] + [model(o) for o in raw.get("others", [])]}


def import_throughput(raw: dict, command: str) -> dict:
    """`benchmarks/throughput.py --json` -> the result-file shape the tables read."""
    rows = raw["rows"]

    def rate(r):
        return r["docs"] / r["seconds"]

    pipeline, st = rows.get("transformers pipeline"), rows.get("sentence-transformers encode")
    torch_vectors = rows.get("rt.embed torch/reference", {}).get("first_vectors")
    out, sweep = {}, []
    for label, r in rows.items():
        if label.startswith("sweep"):
            batch, window = (int(v) for v in re.findall(r"\d+", label.split("batch", 1)[1]))
            sweep.append({"batch": batch, "window_batches": window, "docs_per_s": round(rate(r)),
                          "peak_rss_mb": round(r["peak_rss_mb"])})
            continue
        if "@" in label:
            continue
        small = rows.get(next((k for k in rows if k.startswith(label + " @")), ""), None)
        docs = [round(rate(r)), round(rate(small))] if small else round(rate(r))
        rss = [round(r["peak_rss_mb"]), round(small["peak_rss_mb"])] if small else round(r["peak_rss_mb"])
        row = {"docs_per_s": docs, "x_pipeline": round(rate(r) / rate(pipeline), 2) if pipeline else None,
               "x_sentence_transformers": round(rate(r) / rate(st), 2) if st and not small else None,
               "tokenizing_percent": round(100 * r["tokenize_seconds"] / r["seconds"], 1)
               if "tokenize_seconds" in r else None, "peak_rss_mb": rss}
        if "accuracy" in r:
            row["accuracy_percent"] = round(100 * r["accuracy"], 2)
        if "agreement" in r:
            row["agreement_percent"] = round(100 * r["agreement"], 2)
        if "first_vectors" in r and torch_vectors:
            row["min_cosine"] = round(min_cosine(r["first_vectors"], torch_vectors), 6)
        out[label] = row
    return {**_stamp(raw, command), "machine": f"1-minute load average {raw.get('load_average', 0):.1f}",
            "docs": raw["docs"], "batch_size": 32, "window_batches": None, "note": "", "rows": out, "sweep": sweep,
            "goals": raw.get("goals", [])}


def min_cosine(rows_a: list[list[float]], rows_b: list[list[float]]) -> float:
    """The lowest cosine between paired vectors (an embedding row's first vectors against torch's)."""
    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b)) / (sum(x * x for x in a) * sum(y * y for y in b)) ** 0.5

    return min(cosine(a, b) for a, b in zip(rows_a, rows_b, strict=True))


# What the task table says of each task: its name and data, the metric, KoBERT's published figure.
TASK_ROWS = {
    "nsmc": ("NSMC", "accuracy (50,000 test)", "89.63 %"),
    "ner": ("KMOU NER (2016klp test, 366 sentences)", "strict entity F1 (seqeval)", "86.11"),
    "sts": ("KorSTS (test, 1,379 pairs)", "Spearman × 100, cross-encoder", "81.59"),
    "qa": ("KorQuAD 1.0 (dev split by article, seed 0: 80 % of articles train, the rest held out)", "EM / F1",
           "52.81 EM (on dev: not comparable)"),
    "ynat": ("KLUE YNAT (dev, 9,107 titles)", "macro-F1", None),
}


def import_tasks(prefix: Path, checkpoint: str) -> dict:
    """`kobert finetune T --out PREFIX-T` (its eval.json) + `kobert eval T ... --json PREFIX-T-eval.json`,
    for every task that has both -> the tasks result file."""
    rows, runtimes, cpu = [], None, None
    for task, (name, data, published) in TASK_ROWS.items():
        run, record = Path(f"{prefix}-{task}"), Path(f"{prefix}-{task}-eval.json")
        if not (run / "eval.json").is_file() or not record.is_file():
            continue
        trained, evaluated = (json.loads(f.read_text(encoding="utf-8")) for f in (run / "eval.json", record))
        results = evaluated["results"]
        names = [r["runtime"] for r in results]
        if runtimes is not None and names != runtimes:
            raise SystemExit(f"{record}: runtimes {names}, the other tasks {runtimes}")
        runtimes, cpu = names, evaluated["cpu"].removeprefix("CPU: ")
        metrics = results[0].get("metrics") or {"accuracy": results[0]["accuracy_percent"]}
        agreement = min(r["agreement_percent"] for r in results)
        epochs = trained["config"]["epochs"]
        row = {"task": name, "data": data, "published": published, "agreement_percent": agreement,
               "finetune": f"{epochs} epoch{'s' if epochs > 1 else ''}, LR {trained['config']['lr']:g}",
               "finetune_seconds": round(trained["train_seconds"]), "command": evaluated["command"]}
        if task == "sts":
            bi = metrics.pop("bi_encoder_spearman", None)
            rows.append({**row, "metrics": metrics})
            if bi is not None:
                rows.append({"task": "KorSTS, bi-encoder", "data": "Spearman × 100, `rt.similarity` of mean-pooled "
                             "embeddings", "published": None, "metrics": {"spearman_bi": bi},
                             "note": "the STS cross-encoder's own encoder", "agreement_percent": agreement,
                             "finetune": None, "finetune_seconds": None})
            continue
        if task == "qa":
            row["examples"] = evaluated["examples"]
        rows.append({**row, "metrics": metrics})
    if not rows:
        raise SystemExit(f"{prefix}-TASK/eval.json with {prefix}-TASK-eval.json: none found")
    return {"date": datetime.date.today().isoformat(), "cpu": cpu, "checkpoint": checkpoint,
            "command": f"kobert finetune TASK --checkpoint ... --out {prefix}-TASK; kobert export ...; "
                       f"kobert eval TASK EXPORT --json {prefix}-TASK-eval.json (each row's own command in the file)",
            "runtimes": runtimes, "tasks": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", nargs="?", default="write", choices=["write", "import-bench", "import-throughput",
                                                                            "import-tasks"])
    parser.add_argument("file", nargs="?", type=Path, help="the tool's --json output (import-*)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if a page is stale")
    parser.add_argument("--out", type=Path, help="result file to write (import-*; default: results/<kind>-<date>.json)")
    parser.add_argument("--checkpoint", default="", help="import-tasks: what the task models were fine-tuned from")
    parser.add_argument("--command", default=None, help="import-bench/-throughput: the command that wrote FILE "
                                                        "(default: the tool's usual command)")
    args = parser.parse_args(argv)
    if args.action == "import-tasks":
        result = import_tasks(args.file, args.checkpoint)
        out = args.out or RESULTS / f"tasks-{result['date']}.json"
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {out}; point TASKS in benchmarks/figures.py at it, then run this script without arguments")
        return 0
    if args.action.startswith("import-"):
        raw = json.loads(args.file.read_text(encoding="utf-8"))
        kind = args.action.removeprefix("import-")
        commands = {"bench": f".venv/bin/kobert bench --json {args.file}",
                    "throughput": f".venv/bin/python benchmarks/throughput.py --sweep --json {args.file}"}
        result = (import_bench if kind == "bench" else import_throughput)(raw, args.command or commands[kind])
        out = args.out or RESULTS / f"{kind}-{result['date']}.json"
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {out}; point {kind.upper()} in benchmarks/figures.py at it, then run this script without arguments")
        return 0
    if args.check:
        stale = stale_blocks()
        for block in stale:
            print(f"stale: {block} (run python benchmarks/figures.py)")
        return 1 if stale else 0
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        if (new := update(text)) != text:
            page.write_text(new, encoding="utf-8")
            print(f"updated {page.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
