"""`kobert bulk labels` on Spark against single-process `kobert run`: rows/s, wall seconds, the ratio, peak RSS.

    .venv/bin/python benchmarks/spark_bulk.py --export artifacts/default --runtime onnx

All 50,000 NSMC test reviews (ratings_test.txt from the data folder, or --nsmc FILE; --reviews N for the
first N), one per line in one text file, go through three commands, one after another, once each:
- `kobert run --output labels --input FILE --threads 2`: one process, two intra-op threads;
- `kobert bulk labels --master local[2] --partitions 4`: two tasks at once, one thread each (spark.task.cpus=1);
- `kobert bulk labels` on a loopback standalone cluster: a master and two workers of one core each
  (kobert.spark.loopback_cluster, started before the clock and stopped after), the export shipped to the
  executors (SparkContext.addArchive).
Each is timed from its command's start to its end (JVM start, model loads and output written included),
as a user sees it. Ratio = the command's wall seconds / `kobert run`'s (1.15 = Spark costs 15 % more).
Peak RSS: `kobert run`'s process; for bulk, the largest summed RSS, sampled every 0.2 s, of each
executor's process tree (its JVM and Python workers; in local mode the driver JVM that runs the tasks).
Every bulk output's labels are checked against `kobert run`'s, id by id ("<file>:<line>").

Prints one table (with the CPU model from lscpu, the Spark version and the load average) and writes the
result file benchmarks/results/spark-bulk.json (--json elsewhere), which `benchmarks/figures.py` renders
into docs/deploy/spark.md. The machine should be otherwise idle: every row uses both cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULT = REPO / "benchmarks" / "results" / "spark-bulk.json"


def reviews_file(nsmc: Path, count: int | None, folder: Path) -> Path:
    from kobert.datasets import read_nsmc

    texts = read_nsmc(nsmc, limit=count).texts
    path = folder / "reviews.txt"
    path.write_text("".join(t.replace("\n", " ") + "\n" for t in texts), encoding="utf-8")
    return path


class PeakRss:
    """Samples the RSS of this process's descendants; peak summed RSS per executor tree."""

    def __init__(self):
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _sample(self):
        import psutil

        me = psutil.Process()
        while not self._stop.wait(0.2):
            for root, total in executor_trees(me).items():
                self.peaks[root] = max(self.peaks.get(root, 0), total)


def executor_trees(me) -> dict[int, int]:
    """{executor root pid: RSS of it and its descendants}: a CoarseGrainedExecutorBackend JVM, or in local
    mode the driver JVM (SparkSubmit with spark.master=local[...])."""
    import psutil

    trees = {}
    for process in me.children(recursive=True):
        try:
            line = " ".join(process.cmdline())
            if process.name() != "java":  # not the spark-submit / spark-class shell scripts that start it
                continue
            if "CoarseGrainedExecutorBackend" in line or ("SparkSubmit" in line and "local[" in line):
                members = [process, *process.children(recursive=True)]
                trees[process.pid] = sum(p.memory_info().rss for p in members if p.is_running())
        except psutil.Error:
            continue
    return trees


def timed(command: list[str], env: dict, stdout=subprocess.DEVNULL) -> tuple[float, list[int]]:
    """Wall seconds of one command, and the peak RSS (MiB) of each executor tree it ran."""
    with PeakRss() as rss:
        start = time.perf_counter()
        result = subprocess.run(command, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command[:6])} ...: exit {result.returncode}\n{result.stderr[-3000:]}")
    return seconds, sorted(round(v / 2**20) for v in rss.peaks.values())


def labels_of_run(stdout_file: Path, source: str) -> dict[str, str]:
    rows = [json.loads(line) for line in stdout_file.read_text(encoding="utf-8").splitlines()]
    return {f"{source}:{n}": row.get("label") for n, row in enumerate(rows, 1)}


def labels_of_bulk(folder: Path) -> dict[str, str]:
    found = {}
    for part in sorted(folder.glob("part-*")):
        for line in part.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            found[row["id"]] = row.get("label")
    return found


def run_command(args, reviews: Path) -> list[str]:
    return [sys.executable, "-m", "kobert.cli", "--quiet", "run", str(args.export), "--runtime", args.runtime,
            "--output", "labels", "--input", str(reviews), "--threads", "2", "--batch-size", str(args.batch_size)]


def bulk_command(args, reviews: Path, out: Path, master: str) -> list[str]:
    command = [sys.executable, "-m", "kobert.cli", "--quiet", "bulk", "labels", "--export", str(args.export),
               "--runtime", args.runtime, "--input", str(reviews), "--output", str(out), "--format", "jsonl",
               "--master", master, "--partitions", str(args.partitions), "--batch-size", str(args.batch_size)]
    if not master.startswith("local"):
        command += ["--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
                    "--conf", "spark.ui.enabled=false", "--conf", "spark.executor.memory=1g"]
    return command


def measure(args, folder: Path) -> tuple[int, list[dict]]:
    """(reviews, one row per command): kobert run, then bulk on local[2], then on the standalone cluster."""
    from kobert import spark as ks

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "SPARK_LOCAL_IP": "127.0.0.1"}
    reviews = reviews_file(args.nsmc, args.reviews, folder)
    count = sum(1 for _ in reviews.open(encoding="utf-8"))
    with (folder / "run.jsonl").open("w", encoding="utf-8") as out:
        seconds, _ = timed(run_command(args, reviews), env, stdout=out)
    run_rss = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)  # KiB on Linux; the only child yet
    expected = labels_of_run(folder / "run.jsonl", reviews.name)
    rows = [{"how": "kobert run --threads 2", "seconds": seconds, "peak_rss_mib": [run_rss],
             "labels_agree": f"{count}/{count}"}]
    for how, master in [("kobert bulk, local[2]", "local[2]"), ("kobert bulk, standalone 2 workers x 1 core", None)]:
        out = folder / f"bulk-{len(rows)}"
        if master is None:
            with ks.loopback_cluster(folder / "cluster", workers=2, cores=1, env={"PYTHONPATH": env["PYTHONPATH"]}) as url:
                seconds, peaks = timed(bulk_command(args, reviews, out, url), env)
        else:
            seconds, peaks = timed(bulk_command(args, reviews, out, master), env)
        got = labels_of_bulk(out)
        agree = sum(got.get(i) == label for i, label in expected.items())
        rows.append({"how": how, "seconds": seconds, "peak_rss_mib": peaks, "labels_agree": f"{agree}/{count}"})
    for row in rows:
        row["seconds"] = round(row["seconds"], 1)
        row["rows_per_s"] = round(count / row["seconds"])
        row["ratio"] = round(row["seconds"] / rows[0]["seconds"], 2)
    return count, rows


def lscpu_model() -> str:
    """The CPU as lscpu names it, with the CPUs this process may use."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    return f"{fields.get('Model name', 'model unknown (no lscpu)')}, {len(os.sched_getaffinity(0))} CPUs usable"


def table(result: dict) -> str:
    lines = [f"{result['reviews']:,} NSMC test reviews, `kobert bulk labels` ({result['runtime']}) vs `kobert run`, "
             f"one run each; CPU: {result['cpu']}; Spark {result['spark']}; {result['machine']}",
             "| command | wall s | rows/s | ratio (wall ÷ kobert run's) | labels agree | peak RSS MiB (per executor) |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['how']} | {r['seconds']:,.1f} | {r['rows_per_s']:,} | {r['ratio']:.2f} | "
                     f"{r['labels_agree']} | {', '.join(map(str, r['peak_rss_mib'])) or '-'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from importlib.metadata import version

    from kobert.datasets import default_nsmc_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", required=True, type=Path, help="an export folder with the runtime's artifact")
    parser.add_argument("--runtime", default="onnx")
    parser.add_argument("--reviews", type=int, default=None, help="only the first N reviews (default: all 50,000)")
    parser.add_argument("--nsmc", type=Path, default=default_nsmc_dir() / "ratings_test.txt")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--json", type=Path, default=RESULT, help=f"the result file (default {RESULT.relative_to(REPO)})")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kobert-spark-bench-") as folder:
        count, rows = measure(args, Path(folder))
    command = "python benchmarks/spark_bulk.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"date": datetime.date.today().isoformat(), "cpu": lscpu_model(), "command": command,
              "spark": version("pyspark"), "runtime": args.runtime, "reviews": count,
              "machine": f"1-minute load average {load:.1f} before, {os.getloadavg()[0]:.1f} after", "rows": rows}
    print(table(result))
    args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
