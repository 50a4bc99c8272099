"""The parent: export every artifact, start one worker per row and round, gather a `BenchResult`."""

from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from kobert.bench.measure import median_seconds
from kobert.bench.rows import GEMM_ROWS, MXNET_RAW_ROW, SHAPES, TORCH_ROW, fp32_rows, runtime_rows
from kobert.bench.tables import BenchResult
from kobert.bench.worker import WorkerError, run_worker

def _export_all(weights, export_dir: Path, targets, result: BenchResult) -> dict:
    """Each exporter timed alone; the manifest runtimes need, without parity."""
    from kobert import registry
    from kobert.checkpoint import save_hf_checkpoint

    save_hf_checkpoint(weights, export_dir / "reference")
    manifest = {"source": "bench", "tokenizer": None, "config": weights.config.to_hf_dict(),
                "reference": {"files": ["reference"], "outputs": list(weights.config.output_names), "inputs": []},
                "artifacts": {}}
    calibration = None
    for name in registry.build_order(targets):
        try:
            target = registry.target(name)
            if target.calibrated and calibration is None:  # once for every calibrated tier, and not timed as theirs
                calibration = bench_calibration(weights.config)
            start = time.perf_counter()
            artifact = target.load_exporter().export(weights, export_dir, *([calibration] if target.calibrated else []))
        except Exception as e:  # an exporter that cannot run here (no MXNet env) is a note, not a crash
            result.notes.append(f"{name}: not exported ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
            continue
        result.export_seconds[name] = time.perf_counter() - start
        manifest["artifacts"][name] = artifact.manifest_entry()
        result.size_bytes[name] = sum(p.stat().st_size for f in artifact.files
                                      for p in ([export_dir / f] if (export_dir / f).is_file() else (export_dir / f).rglob("*"))
                                      if p.is_file())
    (export_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def bench_calibration(config):
    """The static int8 tiers' calibration rows: Korean text through the shipped tokenizer, as an export
    without --eval-set calibrates (the bench's models share its vocabulary); golden ids where they do not."""
    from kobert.calibration import calibration_for
    from kobert.checkpoint import shipped
    from kobert.tokenizer import get_tokenizer

    tokenizer = shipped("tokenizer")
    fits = tokenizer.is_dir() and len(get_tokenizer(tokenizer)) <= config.vocab_size
    return calibration_for(config, tokenizer if fits else None)


def worker_requests(config, export_dir: Path, manifest: dict, warmup: int, calls: int) -> list[dict]:
    """One request per row: torch eager, every exported registry row, and the GEMM rows."""
    from kobert import registry

    shapes = {name: list(shape) for name, shape in SHAPES.items()}
    common = {"kind": "runtime", "export_dir": str(export_dir), "shapes": shapes, "vocab_size": config.vocab_size,
              "warmup": warmup, "calls": calls}
    requests = [{**common, "label": TORCH_ROW, "runtime": "torch", "artifact": registry.REFERENCE, "raw_only": True}]
    for row, (runtime_name, artifact) in runtime_rows().items():
        if artifact not in manifest["artifacts"]:
            continue
        chain = registry.build_order([artifact])
        requests.append({**common, "label": row, "runtime": runtime_name, "artifact": artifact,
                         "targets": [asdict(registry.target(name)) for name in chain],
                         "runtime_specs": [asdict(registry.runtime_spec(runtime_name))]})
    for label, runtime_name in GEMM_ROWS.items():
        requests.append({"kind": "gemm", "label": label, "runtime": runtime_name, "k": config.hidden_size,
                         "n": config.intermediate_size, "warmup": warmup, "calls": calls,
                         "rows": {name: b * t for name, (b, t) in SHAPES.items()}})
    return requests


def bench_model(weights, label: str, rounds: int, warmup: int, calls: int, workdir: Path,
                progress=None, targets: list[str] | None = None) -> BenchResult:
    """`targets`: only these artifacts' rows (torch eager and the GEMM rows always run)."""
    config = weights.config
    result = BenchResult(label, config, rounds, calls, load_average={"start": os.getloadavg()[0]})
    artifacts = [a for _, a in runtime_rows().values() if targets is None or a in targets]
    manifest = _export_all(weights, workdir, artifacts, result)
    requests = worker_requests(config, workdir, manifest, warmup, calls)
    result.gemm_rows = list(GEMM_ROWS)
    result.fp32_rows = fp32_rows(manifest)
    failed: set[str] = set()
    for number in range(rounds):
        order = list(requests)
        random.Random(number).shuffle(order)
        for request in order:
            if request["label"] in failed:
                continue
            if progress:
                progress(f"round {number + 1}/{rounds}: {request['label']}")
            try:
                reply = run_worker({**request, "seed": number})
            except WorkerError as e:
                failed.add(request["label"])
                result.notes.append(f"{request['label']}: not measured ({e})")
                continue
            for row, by_shape in reply["times"].items():
                for shape, found in by_shape.items():
                    result.seconds.setdefault(row, {}).setdefault(shape, []).append(statistics.median(found))
            peaks = [p for p in (reply.get("peak_rss_mb"), reply.get("children_peak_rss_mb")) if p]
            if peaks and request["kind"] == "runtime":
                artifact = request["artifact"]
                result.peak_rss_mb[artifact] = max(*peaks, result.peak_rss_mb.get(artifact, 0))
    result.load_average["end"] = os.getloadavg()[0]
    order = [TORCH_ROW, *[r for r in result.seconds if r not in (TORCH_ROW, *GEMM_ROWS)], *GEMM_ROWS]
    result.seconds = {row: result.seconds[row] for row in order if row in result.seconds}
    for row, (runtime_name, _) in runtime_rows().items():
        raw = MXNET_RAW_ROW if runtime_name == "mxnet" else row + " (raw session)"
        if row in result.seconds and raw in result.seconds:
            result.raw_of[row] = raw
    result.notes.append(f"threads: framework defaults in each worker (torch {_torch_threads_note()}, onnxruntime "
                        f"and tensorflow their own), tflite {os.cpu_count()}, mxnet OMP_NUM_THREADS="
                        f"{os.environ.get('OMP_NUM_THREADS', os.cpu_count())}")
    result.notes.append("peak RSS: the row's worker process (max over rounds); for MXNet the larger of the bench "
                        "worker and its MXNet interpreter")
    return result


def _torch_threads_note() -> str:
    return f"{os.environ['OMP_NUM_THREADS']} (OMP_NUM_THREADS)" if "OMP_NUM_THREADS" in os.environ else "default"


def bench_tokenizer(quick: bool) -> dict[str, float]:
    from kobert.checkpoint import shipped
    from kobert.datasets import default_nsmc_dir, read_nsmc
    from kobert.tokenizer import get_tokenizer

    nsmc = default_nsmc_dir() / "ratings_test.txt"
    if nsmc.is_file():
        docs, source = read_nsmc(nsmc).texts, "NSMC test"
    else:
        texts = json.loads((shipped("tokenizer").parent / "golden_inputs.json").read_text(encoding="utf-8"))["texts"]
        docs, source = texts * 1000, "golden texts x1000"
    docs = docs[:2000] if quick else docs
    tokenizer = get_tokenizer(shipped("tokenizer"))
    seconds = median_seconds(lambda: tokenizer(docs), 3 if quick else 5, 1)
    return {f"kobert fast, batch ({len(docs):,} docs, {source})": len(docs) / seconds}


def run_bench(quick: bool = False, rounds: int | None = None, calls: int | None = None,
              progress=None, targets: list[str] | None = None, shipped_default: bool = True) -> BenchResult:
    """The whole benchmark; `quick` (tiny preset, 2 rounds of 2 calls) fits in CI time. `targets`: only these
    artifacts' rows; `shipped_default=False` measures KoBERT-base alone."""
    from kobert.checkpoint import init_checkpoint, load_checkpoint, shipped
    from kobert.config import preset

    name = "tiny" if quick else "base"
    rounds = rounds or (2 if quick else 3)
    calls = calls or (2 if quick else 3)
    warmup = 1
    with tempfile.TemporaryDirectory(prefix="kobert-bench-") as tmp:
        tmp = Path(tmp)
        checkpoint = init_checkpoint(preset(name).with_head("sequence_classification", 2), tmp / "checkpoint", seed=0)
        weights = load_checkpoint(checkpoint).weights
        result = bench_model(weights, f"KoBERT-{name} (random init, 2-label head)", rounds, warmup, calls,
                             tmp / "export", progress, targets)
        shipped_model = shipped("model")
        if quick or not shipped_default:
            result.notes.append("shipped default not measured (" + ("--quick" if quick else "--skip-default") + ")")
        elif (shipped_model / "config.json").is_file():
            result.others.append(bench_model(load_checkpoint(shipped_model).weights, "shipped default",
                                             rounds, warmup, calls, tmp / "export-default", progress, targets))
        else:
            result.notes.append(f"shipped default skipped: {shipped_model} does not exist")
    result.tokenizer_docs_per_s = bench_tokenizer(quick)
    return result
