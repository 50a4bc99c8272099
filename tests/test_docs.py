"""The docs: the site builds with no broken link, every example runs, every figure table comes from its JSON.

Conventions (written for authors in docs/contributing-docs.md):
- ```bash and ```python blocks in README.md and docs/ are executed, in page order, in one scratch
  folder per test session (`.venv`, `kobert/`, `web/` ... linked in; `artifacts/` fresh; `../shared`
  linked when it exists). Consecutive Python blocks of a page share one interpreter, so a later
  block may use an earlier block's names. README.md runs first: other pages may use its `artifacts/quickstart` export.
- `<!-- no-run: REASON -->` on the line before a block: shown, never executed; REASON is required.
- `<!-- needs: WHAT -->` before a block: executed only when WHAT exists (`shared-data` for
  ../shared/data, or a path in the checkout such as `.venv-mxnet`), otherwise skipped, saying so.
- `<!-- output -->` before a ```text block: the expected output of the executed block just above it.
  Each of its lines must match one line of that block's stdout, in order; `...` matches anything.
- Any other fence language (text, json, js, properties) is never executed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
EXECUTED = {"bash", "python"}
KNOWN = EXECUTED | {"text", "json", "js", "properties"}
LINKED = [".venv", ".venv-mxnet", ".venv-hf4", "kobert", "benchmarks", "web", "ci", "tests", "parity_tests", "docs",
          "pyproject.toml", "README.md", "mkdocs.yml"]
FENCE = re.compile(r"((?:^<!-- [^\n]*-->\n)*)^```(\w*)\n(.*?)^```\n", re.M | re.S)
MARKER = re.compile(r"<!-- (no-run|needs|output)(?::\s*(.*?))? -->")
BLOCK_TIMEOUT = 300


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    markers: dict
    expected: str | None = None  # the <!-- output --> block that follows it

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found: list[Block] = []
    for m in FENCE.finditer(text):
        markers = {kind: (value or "").strip() for kind, value in MARKER.findall(m[1])}
        block = Block(page, text.count("\n", 0, m.start(2)) + 1, m[2], m[3], markers)
        if "output" in markers:
            executed = [b for b in found if b.lang in EXECUTED]
            assert executed and block.lang == "text", f"{block.where}: <!-- output --> must be a text block after a run"
            executed[-1].expected = block.code
        found.append(block)
    return found


def test_every_block_says_what_it_is():
    problems = []
    for page in PAGES:
        for b in blocks(page):
            if b.lang not in KNOWN:
                problems.append(f"{b.where}: fence language {b.lang or '(none)'!r}; use one of {sorted(KNOWN)}")
            if "no-run" in b.markers and not b.markers["no-run"]:
                problems.append(f"{b.where}: <!-- no-run --> needs a reason")
            if "no-run" in b.markers and b.lang not in EXECUTED:
                problems.append(f"{b.where}: <!-- no-run --> on a {b.lang} block, which never runs anyway")
    assert not problems, "\n".join(problems)


def test_readme_is_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 250, f"README.md has {lines} lines; the rest belongs in docs/"


def test_mkdocs_build_strict(tmp_path):
    """Broken links, missing pages and bad includes fail the build."""
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def _figures():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import figures
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return figures


def test_figure_tables_equal_their_json():
    figures = _figures()
    used = {m[2] for page in figures.PAGES for m in figures.BLOCK.finditer(page.read_text(encoding="utf-8"))}
    assert used == set(figures.TABLES), f"tables never shown: {set(figures.TABLES) - used}"
    stale = figures.stale_blocks()
    assert not stale, "regenerate with `python benchmarks/figures.py`: " + ", ".join(stale)


def test_task_table_is_imported_from_what_the_commands_wrote(tmp_path, monkeypatch):
    """import-tasks reads `kobert finetune`'s eval.json and `kobert eval --json`, and the table renders it."""
    figures = _figures()
    evaluated = {"command": "kobert eval ner X --json Y", "cpu": "CPU: test", "examples": 366, "task": "ner",
                 "results": [{"runtime": r, "metrics": {"entity_f1": 61.5, "precision": 60.0, "recall": 63.0},
                              "agreement_percent": a, "seconds": 1.0} for r, a in (("torch", 100.0), ("onnx", 99.95))]}
    (tmp_path / "task-ner").mkdir()
    (tmp_path / "task-ner/eval.json").write_text(json.dumps({"train_seconds": 412.4, "config": {"epochs": 8, "lr": 3e-4}}))
    (tmp_path / "task-ner-eval.json").write_text(json.dumps(evaluated))
    record = figures.import_tasks(tmp_path / "task", "--checkpoint backbone")
    [row] = record["tasks"]
    assert record["runtimes"] == ["torch", "onnx"] and row["agreement_percent"] == 99.95
    assert row["finetune"] == "8 epochs, LR 0.0003" and row["finetune_seconds"] == 412
    (tmp_path / "tasks.json").write_text(json.dumps(record))
    monkeypatch.setattr(figures, "RESULTS", tmp_path)
    monkeypatch.setattr(figures, "TASKS", "tasks.json")
    table = "\n".join(figures.tasks())
    assert "| KMOU NER (2016klp test, 366 sentences) | strict entity F1 (seqeval) | 86.11 | 61.50 (P 60.00, R 63.00) " \
           "| 99.950 % | 8 epochs, LR 0.0003, 412 s |" in table


def test_tier_goals_are_judged_by_the_run_and_rendered_from_its_json(tmp_path, monkeypatch):
    """throughput.py judges the goals from its rows (labels compared with torch's, AMX or not); import-throughput
    keeps them; the tiers table and the goals table render them."""
    figures = _figures()
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import throughput
    finally:
        sys.path.remove(str(REPO / "benchmarks"))

    def row(seconds, predicted):
        return {"docs": 4, "seconds": seconds, "tokenize_seconds": seconds / 20, "peak_rss_mb": 300.0,
                "accuracy": 0.5, "predicted": predicted}

    rows = {"rt.logits torch/reference": row(1.0, [0, 1, 1, 0]), "rt.logits onnx/onnx": row(0.5, [0, 1, 1, 0]),
            "rt.logits onnx/onnx-int8": row(0.2, [0, 1, 1, 1]),  # one label in four differs: not a speed candidate
            "rt.logits openvino/openvino-int8": row(0.25, [0, 1, 1, 0]),
            "rt.logits openvino/openvino-bf16": row(0.4, [0, 1, 1, 0]),
            "transformers pipeline": {"docs": 4, "seconds": 1.2, "peak_rss_mb": 500.0, "accuracy": 0.5}}
    throughput.agree_with_torch(rows)
    goals = throughput.goals(rows, {"flags": {"avx512_bf16": True, "amx_bf16": False}})
    by_goal = {g["goal"].split(" >=")[0]: g for g in goals}
    assert by_goal["the best int8 tier (AMX CPU)"]["measured"] == "4.80x (openvino/openvino-int8)"
    assert by_goal["the best int8 tier (AMX CPU)"]["status"] == "missed: this CPU has no AMX"
    assert by_goal["the bf16 tier (AMX CPU)"]["status"] == "missed: this CPU has no AMX"
    assert by_goal["every tier gives torch's labels (agreement"]["measured"] == "lowest 75.00 % (onnx/onnx-int8)"
    raw = {"rows": rows, "docs": 4, "goals": goals, "load_average": 0.1,
           "cpu": {"model": "test CPU", "cpus": 2, "flags": {"avx512_bf16": True, "amx_bf16": False}}}
    record = figures.import_throughput(raw, "python benchmarks/throughput.py --logits-only")
    assert record["cpu"] == "test CPU, 2 CPUs visible; flags: avx512_bf16; absent: amx_bf16"
    assert record["rows"]["rt.logits onnx/onnx-int8"]["agreement_percent"] == 75.0
    (tmp_path / "tiers.json").write_text(json.dumps(record))
    monkeypatch.setattr(figures, "RESULTS", tmp_path)
    monkeypatch.setattr(figures, "TIERS", "tiers.json")
    tiers = "\n".join(figures.throughput_tiers())
    assert "| rt.logits openvino/openvino-int8 | 16 | 4.80 | 4.00 | 5.0 | 300 | 50.00 % | 100.00 % |" in tiers
    assert "| the bf16 tier (AMX CPU) ≥ 4x the transformers pipeline | 3.00x (openvino/openvino-bf16) | " \
           "**missed: this CPU has no AMX** |" in "\n".join(figures.throughput_tier_goals())


def test_the_full_run_renders_its_own_goals_and_embedding_cosines(tmp_path, monkeypatch):
    """import-throughput of a full run (rt.embed, kobert run at N and N/10, the sweep): each embedding row gets
    its min cosine to torch's first vectors, `kobert run` pairs its two sizes, and the goals table is the run's."""
    figures = _figures()
    embed = {"docs": 10, "seconds": 1.0, "tokenize_seconds": 0.05, "peak_rss_mb": 300.0}
    rows = {"rt.embed torch/reference": {**embed, "first_vectors": [[1.0, 0.0], [0.0, 1.0]]},
            "rt.embed onnx/onnx": {**embed, "first_vectors": [[1.0, 0.0], [1.0, 1.0]]},
            "kobert run onnx/onnx": {"docs": 10, "seconds": 2.0, "peak_rss_mb": 220.0},
            "kobert run onnx/onnx @1": {"docs": 1, "seconds": 0.5, "peak_rss_mb": 200.0},
            "transformers pipeline": {"docs": 10, "seconds": 4.0, "peak_rss_mb": 500.0, "accuracy": 0.5},
            "sweep onnx/onnx batch 64 window 32": {**embed, "accuracy": 0.5}}
    goals = [{"goal": "kobert run peak RSS flat (10x the reviews, within 10 %)", "measured": "at most +10.0 %",
              "status": "met"}]
    raw = {"rows": rows, "docs": 10, "goals": goals, "load_average": 2.0,
           "cpu": {"model": "test CPU", "cpus": 2, "flags": {}}}
    record = figures.import_throughput(raw, "python benchmarks/throughput.py --sweep")
    assert record["rows"]["rt.embed onnx/onnx"]["min_cosine"] == 0.707107
    assert record["rows"]["kobert run onnx/onnx"]["docs_per_s"] == [5, 2]
    assert record["sweep"] == [{"batch": 64, "window_batches": 32, "docs_per_s": 10, "peak_rss_mb": 300}]
    (tmp_path / "throughput.json").write_text(json.dumps(record))
    monkeypatch.setattr(figures, "RESULTS", tmp_path)
    monkeypatch.setattr(figures, "THROUGHPUT", "throughput.json")
    table = figures.throughput()
    assert table[0] == "Batch 32; 1-minute load average 2.0."
    assert "| rt.embed onnx/onnx | 10 | 4.00 |  | 5.0 | 300 | 0.707107 |" in table  # no sentence-transformers row
    assert "| kobert run peak RSS flat (10x the reviews, within 10 %) | at most +10.0 % | met |" in figures.throughput_goals()


def test_tf_text_bench_sorts_each_review_and_the_table_reads_what_it_writes(tmp_path, monkeypatch):
    """tf_text_bench.py: the graph's ids equal kobert's, or the same pieces reordered (a tie), or differ;
    sentencepiece's ids are cut at the same length; its result file renders as the tf-serving page's table."""
    figures = _figures()
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import tf_text_bench
    finally:
        sys.path.remove(str(REPO / "benchmarks"))

    class Tensor(np.ndarray):
        def numpy(self):
            return np.asarray(self)

    graph = np.array([[2, 10, 11, 3, 1], [2, 11, 10, 3, 1], [2, 12, 3, 1, 1], [2, 10, 11, 12, 3]])
    mask = (graph != 1).astype(int)
    python = np.array([[2, 10, 11, 3, 1], [2, 10, 11, 3, 1], [2, 13, 3, 1, 1], [2, 10, 11, 12, 3]])
    pieces = {"a": [10, 11], "b": [10, 11], "c": [13], "long": [10, 11, 12, 14]}  # "long" is cut at 5 - 2
    counts = tf_text_bench.compare_ids(list(pieces), [{"input_ids": graph.view(Tensor), "attention_mask": mask.view(Tensor)}],
                                       [{"input_ids": python, "attention_mask": (python != 1).astype(int)}],
                                       pieces.get, max_length=5)
    assert counts == {"ids_equal": 2, "same_pieces_other_order": 1, "other_difference": 1, "equal_to_sentencepiece": 2}
    record = {"date": "2026-12-06", "cpu": "test CPU", "command": "python benchmarks/tf_text_bench.py --json x",
              "machine": "the first 4 reviews; load 0.1", "reviews": 4, "batch_size": 64, "runs": 5,
              "seconds": {"text_in_the_graph": 1.0, "python_tokenizer_then_serving_ids": 2.0,
                          "tokenize_in_the_graph": 0.025, "tokenize_in_python": 0.05},
              "ids": counts, "labels_equal": 4, "savedmodel_mb": {"tf-text": 27.3, "tf": 22.0}}
    (tmp_path / "tf-text-bench.json").write_text(json.dumps(record))
    monkeypatch.setattr(figures, "RESULTS", tmp_path)
    table = figures.tf_text_bench()
    assert table[0] == "The first 4 reviews; load 0.1."
    assert "| tokenizing alone | in the graph (`tokenize`) 25 ms; kobert's tokenizer 50 ms |" in table
    assert "| labels | 4 of 4 equal between the two paths |" in table


def test_tokenizer_and_ort_scripts_write_what_their_tables_read(tmp_path, monkeypatch):
    """tokenizer_bench.py --json and ort_profile.py --json write the result files the docs render, with the
    date, this CPU and the command: the step costs are the differences between rows, small ops are summed."""
    figures = _figures()
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import ort_profile
        import tokenizer_bench
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    libraries = [("ours", 2.0), ("sentencepiece", 0.5), ("xlnet", 1.0)]
    profile = [(f"row {i}", s) for i, s in enumerate([3.0, 1.5, 1.25, 1.0, 2.0, 0.25])]  # 100,000 documents
    tables = tokenizer_bench.result_tables(libraries, profile, 100_000, 100_000 / 0.5)
    assert tables["libraries"]["ours"] == {"docs_per_s": 50_000, "x_sentencepiece": 0.25}
    assert tables["pipeline"]["row 0"]["step_cost"].endswith(": 15.0 µs")  # 30 µs - 15 µs
    assert tables["pipeline"]["row 2"]["step_cost"].endswith(": 2.5 µs") and tables["pipeline"]["row 3"]["us_per_doc"] == 10
    monkeypatch.setattr(sys, "argv", [str(REPO / "benchmarks" / "tokenizer_bench.py"), "--json", "x.json"])
    record = {**figures.stamp_here(0.5), "documents": "100,000 test documents, median of 3", **tables}
    assert record["command"] == ".venv/bin/python benchmarks/tokenizer_bench.py --json x.json"
    assert "CPUs visible; flags:" in record["cpu"] and record["date"].startswith("20")
    (tmp_path / "tokenizer-bench.json").write_text(json.dumps(record))
    monkeypatch.setattr(figures, "RESULTS", tmp_path)
    rendered = "\n".join(figures.tokenizer_pipeline() + figures.tokenizer_libraries())
    assert "| row 1 | 66,667 | 15.0 | offsets: 2.5 µs |" in rendered
    assert rendered.startswith("| our pipeline |") and "100,000 test documents, median of 3; 1-minute load" in rendered
    ops = ort_profile.op_rows([("MatMul", 0.8), ("Add", 0.185), ("Erf", 0.009), ("Div", 0.006)])
    assert ops == [{"op": "MatMul", "percent": 80.0}, {"op": "Add", "percent": 18.5}, {"op": "the rest", "percent": 1.5}]


# --- executing the examples ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def docs_workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("docs")
    work = root / "work"
    work.mkdir()
    for name in LINKED:
        if (REPO / name).exists():
            (work / name).symlink_to(REPO / name)
    (work / "artifacts").mkdir()
    if SHARED.is_dir():
        (root / "shared").symlink_to(SHARED)
    return work


def needs_missing(block: Block, work: Path) -> str | None:
    what = block.markers.get("needs")
    if not what:
        return None
    path = work.parent / "shared" / "data" if what == "shared-data" else work / what
    return None if path.exists() else f"{block.where}: needs {what} ({path} missing)"


PYTHON_RUNNER = """
import json, sys
namespace = {"__name__": "__main__"}
for index, code in json.load(open(sys.argv[1], encoding="utf-8")):
    print(f"\\x00block {index}", flush=True)
    exec(compile(code, f"block {index}", "exec"), namespace)
"""


def run_block(command: list[str], work: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """One block in its own process group, so a timeout stops everything it started (not only bash)."""
    proc = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{' '.join(command)[:200]}: still running after {timeout:.0f} s\n{stdout[-2000:]}\n{stderr[-2000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def run_page(page: Path, work: Path) -> list[str]:
    """Run a page's blocks in order; return the reasons of the skipped ones. Consecutive Python blocks run in
    one interpreter (sharing their names); a shell block between them starts a new one."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    skipped, pending = [], []
    runnable = [b for b in blocks(page) if b.lang in EXECUTED and "no-run" not in b.markers]

    def flush_python():
        if not pending:
            return
        script = work / f".docs-{page.stem}.json"
        script.write_text(json.dumps([[i, b.code] for i, b in enumerate(pending)]), encoding="utf-8")
        proc = run_block([str(work / ".venv/bin/python"), "-c", PYTHON_RUNNER, str(script)], work, env,
                         BLOCK_TIMEOUT * len(pending))
        outputs = proc.stdout.split("\x00block ")[1:]
        if proc.returncode != 0:
            failed = pending[len(outputs) - 1] if outputs else pending[0]
            pytest.fail(f"{failed.where}: python block failed\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        for b, out in zip(pending, outputs):
            check_output(b, out.split("\n", 1)[1] if "\n" in out else "")
        pending.clear()

    for b in runnable:
        reason = needs_missing(b, work)
        if reason:
            skipped.append(reason)
            continue
        if b.lang == "python":
            pending.append(b)
            continue
        flush_python()
        proc = run_block(["bash", "-euo", "pipefail", "-c", b.code], work, env, BLOCK_TIMEOUT)
        if proc.returncode != 0:
            pytest.fail(f"{b.where}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        check_output(b, proc.stdout)
    flush_python()
    return skipped


def check_output(block: Block, stdout: str) -> None:
    if block.expected is None:
        return
    lines = stdout.splitlines()
    position = 0
    for want in block.expected.splitlines():
        pattern = re.compile(".*".join(re.escape(part) for part in want.strip().split("...")))
        while position < len(lines) and not pattern.fullmatch(lines[position].strip()):
            position += 1
        assert position < len(lines), f"{block.where}: expected output line not found in order: {want!r}\n{stdout}"
        position += 1


@pytest.fixture(scope="session")
def readme_ran(docs_workdir) -> Path:
    """README.md's examples, run once: later pages use its artifacts/quickstart export."""
    run_page(REPO / "README.md", docs_workdir)
    return docs_workdir


def test_readme_examples_run(readme_ran):
    assert (readme_ran / "artifacts" / "quickstart" / "manifest.json").is_file()


@pytest.mark.parametrize("page", [p for p in PAGES if p.name != "README.md" and any(
    b.lang in EXECUTED and "no-run" not in b.markers for b in blocks(p))], ids=lambda p: str(p.relative_to(REPO)))
def test_page_examples_run(page, readme_ran):
    skipped = run_page(page, readme_ran)
    if skipped:
        pytest.skip("; ".join(skipped))
