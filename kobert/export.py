"""`kobert export`: checkpoint -> artifacts -> parity -> manifest, all or nothing.

Everything is built in a temporary folder beside the destination and moved into
place only after every artifact has passed parity against the transformers
reference. On any failure the temporary folder is removed and nothing is left
at the destination.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kobert.checkpoint import LoadedCheckpoint, load_checkpoint, save_hf_checkpoint
from kobert.exporters import EXPORTERS, REQUIRES, exporter
from kobert.parity import FP32_TOLERANCE, ParityReport, check_runtime, golden_cases

# artifact -> runtime that runs it
ARTIFACT_RUNTIMES = {"onnx": "onnx", "tf": "tf", "tf2onnx": "onnx", "mxnet": "mxnet"}
DEFAULT_TARGETS = ("tf", "onnx", "tf2onnx", "mxnet")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


class ExportError(RuntimeError):
    """The export could not be made; nothing was written at the destination."""


class ParityFailure(ExportError):
    def __init__(self, report: ParityReport):
        self.report = report
        super().__init__("parity failed:\n  " + "\n  ".join(report.failures))


@dataclass
class ExportResult:
    out: Path
    manifest: dict
    report: ParityReport


def parse_targets(spec: str | list[str] | None) -> list[str]:
    targets = list(DEFAULT_TARGETS) if not spec else ([t.strip() for t in spec.split(",") if t.strip()] if isinstance(spec, str) else list(spec))
    unknown = [t for t in targets if t not in EXPORTERS]
    if unknown:
        raise ExportError(f"unknown export target(s) {', '.join(unknown)}; expected some of {', '.join(EXPORTERS)}")
    return targets


def find_tokenizer(src: Path | None, explicit: str | Path | None) -> Path | None:
    """The tokenizer to ship: --tokenizer, else one that sits in the checkpoint directory."""
    if explicit:
        return Path(explicit)
    if src is not None and src.is_dir():
        if (src / "tokenizer.json").is_file():
            return src
        spm = sorted(p for p in src.iterdir() if p.suffix in (".model", ".spiece"))
        if spm:
            return spm[0]
    return None


def sha256_tree(root: Path, relative: str) -> dict[str, str]:
    path = root / relative
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digests = {}
    for f in files:
        h = hashlib.sha256()
        with open(f, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                h.update(block)
        digests[str(f.relative_to(root))] = h.hexdigest()
    return digests


def build_order(targets: list[str]) -> list[str]:
    needed = set(targets) | {REQUIRES[t] for t in targets if t in REQUIRES}
    return [name for name in EXPORTERS if name in needed]


def check_parity(export_dir: Path, manifest: dict, tolerance: float = FP32_TOLERANCE) -> ParityReport:
    """Run every artifact of an export directory against the reference checkpoint stored in it."""
    from kobert import runtimes

    config = manifest["config"]
    tokenizer = None
    if manifest.get("tokenizer"):
        from kobert.tokenizer import get_tokenizer

        tokenizer = get_tokenizer(export_dir / manifest["tokenizer"])
    cases = golden_cases(config["vocab_size"], config["max_position_embeddings"], tokenizer)
    with runtimes.load(export_dir, runtime="torch") as reference_runtime:
        reference = {case.name: reference_runtime.run(**case.inputs()) for case in cases}
    report = ParityReport()
    for artifact in manifest["artifacts"]:
        runtime_name = ARTIFACT_RUNTIMES[artifact]
        try:
            runtime = runtimes.load(export_dir, runtime=runtime_name, artifact=artifact)
        except Exception as e:
            from kobert.parity import ArtifactParity

            report.artifacts[artifact] = ArtifactParity(artifact, runtime_name, error=f"could not load: {e}")
            continue
        with runtime:
            report.artifacts[artifact] = check_runtime(artifact, runtime, reference, cases, tolerance)
    return report


def export(src: str | Path, out: str | Path, targets: str | list[str] | None = None,
           tokenizer: str | Path | None = None, force: bool = False,
           tolerance: float = FP32_TOLERANCE, loaded: LoadedCheckpoint | None = None) -> ExportResult:
    targets = parse_targets(targets)
    out = Path(out).absolute()
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(f"{out}: exists and is not empty (use --force to replace a previous export)")
    loaded = loaded or load_checkpoint(src)
    src_path = Path(src) if Path(str(src)).exists() else None
    tokenizer_path = find_tokenizer(src_path, tokenizer)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        manifest = _build(loaded, staging, targets, tokenizer_path)
        report = check_parity(staging, manifest, tolerance)
        for name, parity in report.artifacts.items():
            manifest["artifacts"][name]["parity"] = parity.to_dict()
        _write_json(staging / "manifest.json", manifest)
        _write_json(staging / "parity.json", report.to_dict())
        if not report.passed:
            raise ParityFailure(report)
        _move_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(out, manifest, report)


def _build(loaded: LoadedCheckpoint, staging: Path, targets: list[str], tokenizer_path: Path | None) -> dict:
    weights = loaded.weights
    save_hf_checkpoint(weights, staging / "reference")
    manifest = {
        "source": loaded.source,
        "tokenizer": None,
        "config": weights.config.to_hf_dict(),
        "reference": {"files": ["reference"], "framework": _torch_version(),
                      "outputs": list(weights.config.output_names), "inputs": []},
        "artifacts": {},
    }
    if tokenizer_path is not None:
        from kobert.tokenizer import get_tokenizer

        get_tokenizer(tokenizer_path).save_pretrained(str(staging / "tokenizer"))
        manifest["tokenizer"] = "tokenizer"
    for name in build_order(targets):
        artifact = exporter(name).export(weights, staging)
        if name in targets:
            entry = artifact.manifest_entry()
            entry["sha256"] = {k: v for f in artifact.files for k, v in sha256_tree(staging, f).items()}
            manifest["artifacts"][name] = entry
    for name in set(build_order(targets)) - set(targets):  # built only as another's input
        shutil.rmtree(staging / name, ignore_errors=True)
    # Runtimes read manifest.json, so a provisional one is written before parity.
    _write_json(staging / "manifest.json", manifest)
    return manifest


def _torch_version() -> str:
    import torch

    return f"torch {torch.__version__.split('+')[0]}"


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _move_into_place(staging: Path, out: Path) -> None:
    """Swap the finished export in; a previous export is removed only after the swap."""
    previous = None
    if out.exists():
        previous = out.with_name(f".{out.name}.previous-{os.getpid()}")
        out.rename(previous)
    staging.chmod(0o755)  # mkdtemp made it private
    staging.rename(out)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


def reparity(export_dir: str | Path, tolerance: float = FP32_TOLERANCE) -> ParityReport:
    """`kobert parity DIR`: re-check an existing export against its stored reference."""
    from kobert.runtimes.base import read_manifest

    export_dir = Path(export_dir)
    return check_parity(export_dir, read_manifest(export_dir), tolerance)
