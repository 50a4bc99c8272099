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

import numpy as np

from kobert.checkpoint import LoadedCheckpoint, load_checkpoint, save_hf_checkpoint
from kobert.exporters import EXPORTERS, REQUIRES, exporter
from kobert.parity import FP32_TOLERANCE, GATES, ArtifactParity, ParityReport, check_runtime, golden_cases, task_gate

# artifact -> runtime that runs it
ARTIFACT_RUNTIMES = {"onnx": "onnx", "tf": "tf", "tf2onnx": "onnx", "mxnet": "mxnet",
                     "onnx-optimized": "onnx", "onnx-fp16": "onnx", "onnx-int8": "onnx",
                     "tflite": "tflite", "tflite-int8": "tflite"}
# artifact -> parity tier (kobert.parity.GATES); an artifact not named here is plain fp32. Read from
# this table, not from the manifest, so an edited manifest cannot loosen its own gate on re-check.
ARTIFACT_TIERS = {"onnx-optimized": "fp32-fused", "onnx-fp16": "fp16", "onnx-int8": "int8",
                  "tflite-int8": "int8"}
DEFAULT_TARGETS = ("tf", "onnx", "tf2onnx", "mxnet")


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


def read_eval_set(path: str | Path) -> tuple[list[str], np.ndarray]:
    """A labelled TSV with a header: a text column (document, text or sentence) and a label column.

    NSMC's ratings_test.txt (id, document, label) reads as is.
    """
    import csv

    path = Path(path)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [h.strip().lower() for h in next(rows, [])]
        text_column = next((header.index(c) for c in ("document", "text", "sentence") if c in header), None)
        if text_column is None or "label" not in header:
            raise ValueError(f"{path}: expected a header with a text column (document, text or sentence) "
                             f"and a label column, got {header}")
        label_column = header.index("label")
        texts, labels = [], []
        for number, row in enumerate(rows, start=2):
            if not row:
                continue
            try:
                labels.append(int(row[label_column]))
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{number}: label is not an integer: {row!r}") from None
            texts.append(row[text_column] if text_column < len(row) else "")
    if not texts:
        raise ValueError(f"{path}: no labelled rows")
    return texts, np.asarray(labels)


def _logits_over(runtime, encoded: list[dict]) -> np.ndarray:
    return np.concatenate([runtime.run(**batch)["logits"] for batch in encoded])


class _TaskData:
    """Inputs and fp32 reference logits for the int8 task gate, computed once per export."""

    def __init__(self, export_dir: Path, manifest: dict, tokenizer, cases, reference: dict, eval_set):
        self.labels = None
        self.source = ""
        if eval_set is None:
            self.encoded = [case.inputs() for case in cases]
            self.reference_logits = np.concatenate([reference[case.name]["logits"] for case in cases])
            return
        if tokenizer is None:
            raise ValueError(f"eval set {eval_set}: the export has no tokenizer to encode it (pass --tokenizer)")
        from kobert import runtimes

        texts, self.labels = read_eval_set(eval_set)
        self.source = f" {Path(eval_set).name}"
        # The same length rule as Runtime.encode: a tokenizer may know the shorter length its model was trained at.
        max_length = min(manifest["config"]["max_position_embeddings"], tokenizer.model_max_length)
        self.encoded = []
        for start in range(0, len(texts), 32):
            batch = tokenizer(texts[start:start + 32], padding=True, truncation=True, max_length=max_length,
                              return_tensors="np")
            self.encoded.append({k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")})
        with runtimes.load(export_dir, runtime="torch") as reference_runtime:
            self.reference_logits = _logits_over(reference_runtime, self.encoded)


def check_parity(export_dir: Path, manifest: dict, tolerance: float = FP32_TOLERANCE,
                 eval_set: str | Path | None = None) -> ParityReport:
    """Run every artifact of an export directory against the reference checkpoint stored in it.

    Each artifact is judged by its tier's gate (ARTIFACT_TIERS); int8 tiers of a
    sequence classifier also by the task gate, on `eval_set` when given.
    """
    from dataclasses import replace

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
    task_data = None
    for artifact in manifest["artifacts"]:
        runtime_name = ARTIFACT_RUNTIMES[artifact]
        try:
            runtime = runtimes.load(export_dir, runtime=runtime_name, artifact=artifact)
        except Exception as e:
            report.artifacts[artifact] = ArtifactParity(artifact, runtime_name, error=f"could not load: {e}")
            continue
        tier = ARTIFACT_TIERS.get(artifact)
        gate = None if tier is None else GATES[tier]
        if gate is not None and gate.max_abs is not None:
            gate = replace(gate, max_abs=tolerance)
        with runtime:
            parity = check_runtime(artifact, runtime, reference, cases, tolerance, gate=gate)
            if gate is not None and gate.task_gate and not parity.error:
                if config.get("architectures", [""])[0] != "BertForSequenceClassification":
                    parity.task = {"measured_on": "nothing: the task gate needs a sequence-classification head"}
                else:
                    if task_data is None:
                        task_data = _TaskData(export_dir, manifest, tokenizer, cases, reference, eval_set)
                    candidate = _logits_over(runtime, task_data.encoded)
                    parity.checks["task"], parity.task = task_gate(
                        task_data.reference_logits, candidate, task_data.labels,
                        gate.max_accuracy_delta_points, task_data.source)
            report.artifacts[artifact] = parity
    return report


def export(src: str | Path, out: str | Path, targets: str | list[str] | None = None,
           tokenizer: str | Path | None = None, force: bool = False,
           tolerance: float = FP32_TOLERANCE, loaded: LoadedCheckpoint | None = None,
           eval_set: str | Path | None = None) -> ExportResult:
    """`eval_set`: a labelled TSV for the int8 task gate (see `read_eval_set`); without one the
    gate compares int8 and fp32 predicted labels on the golden inputs."""
    targets = parse_targets(targets)
    if eval_set is not None and not Path(eval_set).is_file():
        raise ExportError(f"{eval_set}: eval set not found")
    out = Path(out).absolute()
    if out.exists() and any(out.iterdir()) and not force:
        raise ExportError(f"{out}: exists and is not empty (use --force to replace a previous export)")
    loaded = loaded or load_checkpoint(src)
    tokenizer_path = find_tokenizer(loaded.path, tokenizer)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        manifest = _build(loaded, staging, targets, tokenizer_path)
        report = check_parity(staging, manifest, tolerance, eval_set)
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
    from importlib.metadata import version

    return f"torch {version('torch').split('+')[0]}"


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
