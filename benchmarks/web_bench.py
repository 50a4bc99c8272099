"""The README's browser / Node / Hugging Face figures: latency, parity max-abs and id agreement.

    python benchmarks/web_bench.py EXPORT_DIR [--reviews 1000] [--batch 32] [--screenshot docs/web-demo.png] [--json FILE]

EXPORT_DIR must hold the "onnx" and "hf-onnx" artifacts (and "onnx-int8" for the q8 row), e.g.
`kobert export default --to onnx,onnx-int8,hf-onnx --out artifacts/default-web`. The script builds
the web package, serves it with its serve.py (COOP/COEP, 127.0.0.1), and runs one Chromium
(web/browser_check.mjs) and Node (web/package_node_check.mjs, web/node_check.mjs). Every row: the first `--batch` NSMC test reviews as one call
(median of 7 after one warm-up), max-abs of logits against the torch reference, and how many of
`--reviews` reviews get kobert's ids. Optimum's rows need .venv-hf4 (ci/setup.sh). --json writes the
table as the result file the docs render (benchmarks/results/web-bench.json, with date, CPU and command).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
WEB_DIR = REPO_ROOT / "web"
OPTIMUM_PYTHON = REPO_ROOT / ".venv-hf4" / "bin" / "python"
# Runs in .venv-hf4 (transformers 4.57), where kobert is not importable.
OPTIMUM_CHECK = r"""
import json, statistics, sys, time
from optimum.onnxruntime import ORTModelForSequenceClassification
from transformers import AutoTokenizer
request = json.load(open(sys.argv[1], encoding="utf-8"))
tokenizer = AutoTokenizer.from_pretrained(request["model_dir"])
model = ORTModelForSequenceClassification.from_pretrained(request["model_dir"], subfolder="onnx",
                                                          file_name=request["file_name"])
batch = tokenizer(request["batch"], padding=True, truncation=True, return_tensors="np")
logits = model(**batch).logits
times = []
for _ in range(7):
    start = time.perf_counter()
    model(**batch)
    times.append(1000 * (time.perf_counter() - start))
ids = tokenizer(request["texts"], truncation=True)["input_ids"]
print(json.dumps({"logits": logits.tolist(), "input_ids": ids, "ms_per_call": statistics.median(times)}))
"""
SCREENSHOT_REVIEW = "배우들 연기가 정말 좋았고 마지막 장면에서는 눈물이 났어요. 강력 추천합니다!"


def node(script: str, request: dict, work: Path) -> list[dict]:
    path = work / f"{Path(script).stem}.json"
    path.write_text(json.dumps(request, ensure_ascii=False), encoding="utf-8")
    proc = subprocess.run(["node", str(WEB_DIR / script), str(path)], cwd=WEB_DIR, capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0:
        sys.exit(f"{script}: failed\n{proc.stderr[-3000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--reviews", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the result file the docs' table reads")
    args = parser.parse_args()
    args.export_dir = args.export_dir.resolve()  # Node runs in web/: a relative folder would point there
    load_at_start = os.getloadavg()[0]

    from kobert import runtimes
    from kobert.datasets import locate_nsmc, read_nsmc
    from kobert.exporters.web import build

    reviews = read_nsmc(locate_nsmc() / "ratings_test.txt", limit=args.reviews).texts
    batch = reviews[:args.batch]
    with runtimes.load(args.export_dir, runtime="torch") as torch_runtime:
        ours = [e.ids for e in torch_runtime.text_encoder.encodings(reviews)]
        want = torch_runtime.run(**torch_runtime.encode(batch))["logits"]
    with runtimes.load(args.export_dir, runtime="onnx") as onnx_runtime:
        inputs = onnx_runtime.encode(batch)
        onnx_runtime.run(**inputs)
        times = []
        for _ in range(7):
            start = time.perf_counter()
            onnx_runtime.run(**inputs)
            times.append(1000 * (time.perf_counter() - start))
        python_logits = onnx_runtime.run(**inputs)["logits"]
    import onnxruntime

    rows = [(f"Python onnxruntime {onnxruntime.__version__} (kobert.runtimes, the onnx artifact)", float(np.median(times)),
             *_parity(python_logits, want, [True] * len(batch)), len(reviews))]

    work = Path(tempfile.mkdtemp(prefix="web-bench-"))
    package = build(args.export_dir, work / "site")
    server = subprocess.Popen([sys.executable, str(package / "serve.py"), "--port", "0"], stdout=subprocess.PIPE,
                              text=True)
    try:
        base = server.stdout.readline().strip()
        page = {"url": base, "texts": batch, "repeats": 7, "encode": reviews}
        if args.screenshot:
            page["screenshot"] = {"path": str(args.screenshot.resolve()), "text": SCREENSHOT_REVIEW}
        chromium = os.environ.get("KOBERT_CHROMIUM") or shutil.which("chromium")
        events = node("browser_check.mjs", {"chromium": chromium, "pages": [page]}, work)
    finally:
        server.kill()
        server.wait()
    browser = next(e for e in events if e["event"] == "result")["pages"][0]
    if browser.get("error"):
        sys.exit(f"the page failed: {browser['error']}")
    agree = sum(a == b for a, b in zip(browser["encoded"], ours))
    threads = browser["info"]["threads"]
    rows.append((f"Chromium, onnxruntime-web wasm ({threads} thread{'s' if threads != 1 else ''}), kobert package web",
                 browser["ms_per_call"], *_parity(browser["result"]["logits"], want,
                                                  _same(browser["result"]["input_ids"], ours)), agree))

    in_node = node("package_node_check.mjs", {"package_dir": str(package), "texts": batch, "repeats": 7}, work)[-1]
    encoded = node("package_node_check.mjs", {"package_dir": str(package), "texts": reviews, "repeats": 0}, work)[-1]
    rows.append((f"Node, onnxruntime-node {in_node['ort']}, the package's kobert.js", in_node["ms_per_call"],
                 *_parity(in_node["result"]["logits"], want, _same(in_node["result"]["input_ids"], ours)),
                 sum(a == b for a, b in zip(encoded["result"]["input_ids"], ours))))

    folder = args.export_dir / "hf-onnx"
    for dtype in ("fp32", "q8"):
        if dtype == "q8" and not (folder / "onnx" / "model_quantized.onnx").is_file():
            continue
        timed = node("node_check.mjs", {"model_dir": str(folder), "task": "text-classification", "dtype": dtype,
                                        "texts": batch, "repeats": 7}, work)[-1]
        ids = node("node_check.mjs", {"model_dir": str(folder), "task": "text-classification", "dtype": "fp32",
                                      "texts": reviews, "repeats": 0}, work)[-1]["input_ids"]
        rows.append((f"Node, transformers.js {dtype} on hf-onnx (its own tokenizer call)", timed["ms_per_call"],
                     *_parity(timed["outputs"]["logits"], want, _same(_unpadded(timed["input_ids"]), ours)),
                     sum(a == b for a, b in zip(_unpadded(ids), ours))))

    if OPTIMUM_PYTHON.is_file():
        (work / "optimum_check.py").write_text(OPTIMUM_CHECK, encoding="utf-8")
        for file_name in ("model.onnx", "model_quantized.onnx"):
            if not (folder / "onnx" / file_name).is_file():
                continue
            request = work / "optimum.json"
            request.write_text(json.dumps({"model_dir": str(folder), "file_name": file_name, "batch": batch,
                                           "texts": reviews}, ensure_ascii=False), encoding="utf-8")
            proc = subprocess.run([str(OPTIMUM_PYTHON), str(work / "optimum_check.py"), str(request)],
                                  env={"PATH": os.environ["PATH"], "HF_HUB_OFFLINE": "1"},
                                  capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                sys.exit(f"optimum: failed\n{proc.stderr[-3000:]}")
            got = json.loads(proc.stdout.splitlines()[-1])
            rows.append((f"Python, Optimum ORTModelForSequenceClassification on hf-onnx ({file_name})",
                         got["ms_per_call"], *_parity(got["logits"], want, _same(got["input_ids"][:len(batch)], ours)),
                         sum(a == b for a, b in zip(got["input_ids"], ours))))

    print(f"{len(batch)} NSMC test reviews per call; ids compared on the first {len(reviews)}\n")
    print("| runtime | ms per call | max-abs logits vs torch, all | the same, texts with kobert's ids "
          "| reviews with kobert's ids |")
    print("|---|---|---|---|---|")
    for name, ms, max_abs, max_abs_same, agreeing in rows:
        print(f"| {name} | {ms:.1f} | {max_abs:.1e} | {max_abs_same:.1e} | {agreeing}/{len(reviews)} |")
    if args.json:
        from figures import stamp_here

        stamp = stamp_here(load_at_start, f"Chromium headless; one batch of the first {len(batch)} NSMC test reviews "
                                          f"per call, median of 7 after a warm-up; ids on the first {len(reviews):,} reviews")
        table = [{"runtime": name, "ms_per_call": round(ms, 1), "max_abs_all": f"{max_abs:.1e}",
                  "max_abs_same_ids": f"{max_abs_same:.1e}", "same_ids": f"{agreeing}/{len(reviews)}"}
                 for name, ms, max_abs, max_abs_same, agreeing in rows]
        args.json.write_text(json.dumps({**stamp, "rows": table}, indent=2, ensure_ascii=False) + "\n",
                             encoding="utf-8")
        print(f"wrote {args.json}")


def _parity(got, want, same_ids: list[bool]) -> tuple[float, float]:
    """max-abs over the batch, and over the texts whose ids were kobert's."""
    difference = np.abs(np.asarray(got, dtype=np.float32) - want).max(axis=1)
    same = difference[np.asarray(same_ids, dtype=bool)]
    return float(difference.max()), float(same.max()) if len(same) else float("nan")


def _same(ids: list[list[int]], ours: list[list[int]]) -> list[bool]:
    return [a == b for a, b in zip(ids, ours)]


def _unpadded(padded_ids: list[list[int]]) -> list[list[int]]:
    """transformers.js pads on the right with [PAD] (1), which no review's own pieces contain."""
    return [[i for i in row if i != 1] for row in padded_ids]


if __name__ == "__main__":
    main()
