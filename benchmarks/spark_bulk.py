"""`kobert bulk labels` on Spark against single-process `kobert run`: documents/s, Spark's overhead, peak RSS.

    python benchmarks/spark_bulk.py --export artifacts/default [--runtime onnx] [--reviews 50000] [--json FILE]

The first --reviews NSMC test reviews (ratings_test.txt from the data folder, or --nsmc FILE), one per
line in one text file, go through, one run each, one after another:
- `kobert run --output labels --input FILE --threads 2` (one process, two intra-op threads);
- `kobert bulk labels --master local[2] --partitions 4` (two tasks at once, one thread each);
- `kobert bulk labels` on a loopback standalone cluster: a master and two workers of one core each
  (kobert.spark.loopback_cluster), the export shipped to the executors.
Each is timed from its command's start to its end (JVM start, model loads and output written included),
as a user sees it. Overhead = the run's seconds / `kobert run`'s seconds - 1. Peak RSS per executor: the
largest summed RSS, sampled every 0.2 s, of each executor's process tree (its JVM and Python workers; in
local mode the one driver JVM that runs the tasks, with its workers). Every bulk output's labels are checked
against `kobert run`'s, id by id ("<file>:<line>").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def reviews_file(nsmc: Path, count: int, folder: Path) -> Path:
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
    mode the driver JVM (SparkSubmit)."""
    import psutil

    trees = {}
    for process in me.children(recursive=True):
        try:
            line = " ".join(process.cmdline())
            if "CoarseGrainedExecutorBackend" in line or ("SparkSubmit" in line and "local[" in line):
                members = [process, *process.children(recursive=True)]
                trees[process.pid] = sum(p.memory_info().rss for p in members if p.is_running())
        except psutil.Error:
            continue
    return trees


def timed(command: list[str], env: dict) -> tuple[float, dict[int, int]]:
    with PeakRss() as rss:
        start = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(command[:4])}...: exit {result.returncode}\n{result.stderr[-3000:]}")
    return seconds, rss.peaks


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


def bulk_command(args, reviews: Path, out: Path, master: str) -> list[str]:
    command = [sys.executable, "-m", "kobert.cli", "--quiet", "bulk", "labels", "--export", str(args.export),
               "--runtime", args.runtime, "--input", str(reviews), "--output", str(out), "--format", "jsonl",
               "--master", master, "--partitions", "4", "--batch-size", str(args.batch_size)]
    if not master.startswith("local"):
        command += ["--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
                    "--conf", "spark.ui.enabled=false", "--conf", "spark.executor.memory=1g"]
    return command


def measure(args) -> list[dict]:
    from kobert import spark as ks

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "SPARK_LOCAL_IP": "127.0.0.1"}
    folder = Path(tempfile.mkdtemp(prefix="kobert-spark-bench-"))
    reviews = reviews_file(args.nsmc, args.reviews, folder)
    count = sum(1 for _ in reviews.open(encoding="utf-8"))
    run_out = folder / "run.jsonl"
    run = [sys.executable, "-c", "import sys; from kobert.cli import main; sys.stdout = open(sys.argv[1], 'w'); "
           "sys.exit(main(sys.argv[2:]))", str(run_out), "--quiet", "run", str(args.export), "--runtime",
           args.runtime, "--output", "labels", "--input", str(reviews), "--threads", "2",
           "--batch-size", str(args.batch_size)]
    seconds, _ = timed(run, env)
    expected = labels_of_run(run_out, reviews.name)
    rows = [{"how": f"kobert run --threads 2 ({args.runtime})", "seconds": seconds, "peak_rss_mib": []}]
    base = seconds
    for how, master_of in [("kobert bulk, local[2]", lambda: "local[2]"), ("kobert bulk, standalone 2 x 1 core", None)]:
        out = folder / how.split(", ")[1].split(" ")[0].replace("[", "").replace("]", "")
        if master_of is not None:
            seconds, peaks = timed(bulk_command(args, reviews, out, master_of()), env)
        else:
            with ks.loopback_cluster(folder / "cluster", workers=2, cores=1, env={"PYTHONPATH": env["PYTHONPATH"]}) as url:
                seconds, peaks = timed(bulk_command(args, reviews, out, url), env)
        got = labels_of_bulk(out)
        agree = sum(got.get(i) == label for i, label in expected.items())
        rows.append({"how": how, "seconds": seconds, "overhead": seconds / base - 1, "labels_agree": f"{agree}/{count}",
                     "peak_rss_mib": sorted(round(v / 2**20) for v in peaks.values())})
    for row in rows:
        row["docs_per_s"] = count / row["seconds"]
    return rows


def table(rows: list[dict], count: int) -> str:
    lines = [f"{count:,} NSMC test reviews, one run each",
             "| how | seconds | docs/s | overhead vs kobert run | labels agree | peak RSS per executor (MiB) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        overhead = f"{r['overhead']:+.0%}" if "overhead" in r else "-"
        lines.append(f"| {r['how']} | {r['seconds']:.1f} | {r['docs_per_s']:,.0f} | {overhead} | "
                     f"{r.get('labels_agree', '-')} | {', '.join(map(str, r['peak_rss_mib'])) or '-'} |")
    return "\n".join(lines)


def main() -> int:
    from kobert.bench.measure import cpu_info, cpu_line
    from kobert.datasets import default_nsmc_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", required=True, type=Path, help="an export folder with the runtime's artifact")
    parser.add_argument("--runtime", default="onnx")
    parser.add_argument("--reviews", type=int, default=50_000)
    parser.add_argument("--nsmc", type=Path, default=default_nsmc_dir() / "ratings_test.txt")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    rows = measure(args)
    count = round(rows[0]["docs_per_s"] * rows[0]["seconds"])
    cpu = cpu_line(cpu_info())
    print(cpu)
    print(table(rows, count))
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "reviews": count, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
