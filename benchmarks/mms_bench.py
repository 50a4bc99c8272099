"""Serving an export with Multi Model Server: worker ready time, latency per request, parity.

    python benchmarks/mms_bench.py [--export DIR] [--requests 50] [--runs 1] [--json FILE]

Without --export it exports the shipped default (`kobert export default --to
mxnet`). It packages the export (`kobert package mms`), starts MMS 1.1.11 on
127.0.0.1 (kobert.exporters.mms_server), and measures, one thing at a time:
- worker ready: the synchronous registration of the archive (unpacking, the
  worker's start, the handler's model load and warm-up), batch size 1;
- single: median latency of --requests sequential {"text"} requests;
- batch of 8: median latency of --requests sequential {"texts": 8 texts};
- 4 clients: the archive registered again with batch_size 4, four clients
  sending --requests requests each at once: median latency and requests/s;
- max-abs of every reply's logits against the torch reference and the MXNet
  runtime (`kobert run --runtime mxnet`).
The server is stopped by its process group at the end, also on failure. --runs N repeats the
whole measure N times (a fresh server each); --json writes every run as the result file the docs
render (benchmarks/results/mms-bench.json, with date, CPU and command).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from kobert.cli import main as kobert
from kobert.exporters.mms_server import LocalModelServer, mms_launcher
from kobert.runtimes import load

TEXTS = [
    "이 영화 정말 재미있어요! 배우들 연기가 최고",
    "최악이다... 시간 아깝다 ㅠㅠ",
    "그냥 그랬어요. 기대보다는 별로",
    "음악이 너무 좋아서 두 번 봤습니다",
    "스토리가 지루하고 결말도 허무했다",
    "가족이랑 보기 좋은 따뜻한 영화 ㅎㅎ",
    "연출은 괜찮은데 대사가 너무 유치함",
    "올해 본 영화 중에 최고! 강력 추천합니다",
]


def timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    result = call()
    return (time.perf_counter() - start) * 1000, result


def checked(status_and_reply):
    status, reply = status_and_reply
    if status != 200:
        raise RuntimeError(f"MMS answered {status}: {reply}")
    return reply


def run(export: Path, requests: int, work: Path) -> dict:
    store = work / "store"
    store.mkdir(parents=True)
    package_ms, code = timed(lambda: kobert(["package", "mms", str(export), "--out", str(store / "kobert.mar")]))
    if code:
        raise RuntimeError("kobert package mms failed")
    torch_logits = load(export, runtime="torch").logits(TEXTS)
    with load(export, runtime="mxnet") as mxnet_runtime:
        mxnet_logits = mxnet_runtime.logits(TEXTS)
    served: list[tuple[int, list]] = []  # (text index, logits) of every reply
    server = LocalModelServer(mms_launcher(), store, work / "mms")
    try:
        ping_ms, _ = timed(server.start)
        ready_ms, _ = timed(lambda: server.register("kobert.mar", "kobert", batch_size=1))

        single = []
        for i in range(requests):
            ms, reply = timed(lambda: checked(server.predict("kobert", {"text": TEXTS[i % len(TEXTS)]})))
            single.append(ms)
            served.append((i % len(TEXTS), reply["logits"]))

        batch = []
        for _ in range(requests):
            ms, replies = timed(lambda: checked(server.predict("kobert", {"texts": TEXTS})))
            batch.append(ms)
            served.extend((k, r["logits"]) for k, r in enumerate(replies))

        server.register("kobert.mar", "kobert_b4", batch_size=4)
        clients, latencies, lock = 4, [], threading.Lock()
        barrier = threading.Barrier(clients)

        def client(c):
            barrier.wait()
            for i in range(requests):
                k = (c + i) % len(TEXTS)
                ms, reply = timed(lambda: checked(server.predict("kobert_b4", {"text": TEXTS[k]})))
                with lock:
                    latencies.append(ms)
                    served.append((k, reply["logits"]))

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        wall_ms, _ = timed(lambda: ([t.start() for t in threads], [t.join() for t in threads]))
        batches = [int(line.split("batch of ")[1].split()[0]) for line in server.worker_log().splitlines()
                   if "kobert: batch of" in line and "W-kobert_b4" in line]
    finally:
        server.stop()
    leftover = server.leftover_pids()
    index = np.array([k for k, _ in served])
    logits = np.array([row for _, row in served], dtype=np.float32)
    return {
        "texts": len(TEXTS), "requests_per_measure": requests,
        "package_ms": round(package_ms), "start_to_ping_ms": round(ping_ms), "worker_ready_ms": round(ready_ms),
        "single_median_ms": round(statistics.median(single), 2),
        "batch8_median_ms": round(statistics.median(batch), 2),
        "clients4_batch_size4_median_ms": round(statistics.median(latencies), 2),
        "clients4_requests_per_s": round(clients * requests / (wall_ms / 1000), 1),
        "clients4_mean_requests_per_worker_batch": round(float(np.mean(batches)), 2) if batches else None,
        "max_abs_vs_torch": float(np.abs(logits - torch_logits[index]).max()),
        "max_abs_vs_mxnet_runtime": float(np.abs(logits - mxnet_logits[index]).max()),
        "replies_compared": len(served),
        "leftover_pids": leftover,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, default=None, help="an export with the mxnet artifact (default: export the shipped default)")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--runs", type=int, default=1, help="repeat the whole measure, a fresh server each time")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    load_at_start = os.getloadavg()[0]
    if mms_launcher() is None:
        print("mms_bench: no multi-model-server beside the MXNet python (run `bash ci/setup.sh`)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mms-bench-") as work:
        work = Path(work)
        export = args.export
        if export is None:
            export = work / "export"
            if kobert(["export", "default", "--to", "mxnet", "--out", str(export), "--quiet"]):
                return 1
        results = [run(export, args.requests, work / f"run-{i + 1}") for i in range(args.runs)]
    for key in results[0]:
        print(f"{key:40} " + "   ".join(str(result[key]) for result in results))
    if args.json:
        from figures import stamp_here

        stamp = stamp_here(load_at_start, f"over 127.0.0.1, medians of {args.requests} requests")
        args.json.write_text(json.dumps({**stamp, "runs": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
