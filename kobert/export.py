"""`kobert export`: checkpoint -> artifacts -> parity -> manifest, all or nothing.

Everything is built in a temporary folder beside the destination and moved into
place only after every artifact has passed parity against the transformers
reference. On any failure the temporary folder is removed and nothing is left
at the destination.
"""

from __future__ import annotations

import errno
import os
import shutil
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kobert import registry
from kobert.checkpoint import LoadedCheckpoint, load_checkpoint, save_hf_checkpoint
from kobert.parity import (FP32_TOLERANCE, GATES, ArtifactParity, ParityReport, check_runtime, golden_cases,
                           metric_gate, predicted_labels, task_gate)
from kobert.progress import say
from kobert.runtimes.base import IntegrityError, files_under, read_manifest, sha256_file, verify_files
from kobert.staging import STAGING_MARKER, remove_stale_staging  # noqa: F401  (importable from here, as before)
from kobert.staging import move_into_place, staging_folder, write_json



class ExportError(RuntimeError):
    """The export could not be made; nothing was written at the destination."""


class ParityFailure(ExportError):
    def __init__(self, report: ParityReport):
        self.report = report
        super().__init__("parity failed:\n  " + "\n  ".join(report.failures))


def disk_full(error: BaseException) -> bool:
    """Whether a write failed for want of space, whatever the framework calls that: OSError ENOSPC or
    EDQUOT, safetensors' SafetensorError (StorageFull), TensorFlow's ResourceExhaustedError."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(sign in str(error) for sign in ("No space left on device", "Disk quota exceeded", "StorageFull"))


@contextmanager
def writing(what: str, folder: Path):
    """A full disk while writing `what` into `folder` becomes one ExportError naming both."""
    try:
        yield
    except ExportError:
        raise
    except Exception as e:
        if not disk_full(e):
            raise
        raise ExportError(f"{folder}: no space left on device while writing {what}; nothing was exported") from None


@dataclass
class ExportResult:
    out: Path
    manifest: dict
    report: ParityReport


def parse_targets(spec: str | list[str] | None) -> list[str]:
    if not spec:
        targets = registry.default_targets()
    elif isinstance(spec, str):
        targets = [t.strip() for t in spec.split(",") if t.strip()]
    else:
        targets = list(spec)
    unknown = [t for t in targets if t not in registry.TARGETS]
    if unknown or not targets:
        raise ExportError(f"unknown export target(s) {', '.join(unknown) or '(none given)'}; "
                          f"expected some of {', '.join(registry.TARGETS)}")
    return targets


class ExportWarning(UserWarning):
    """The export was made, but the user should know something about it (one line; the CLI prints it)."""


def find_tokenizer(src: Path | None, explicit: str | Path | None) -> Path | None:
    """The tokenizer to ship: --tokenizer, else the checkpoint directory when it holds tokenizer files
    (which one, and how it becomes KoBERT's ids: `kobert.tokenizer.find_tokenizer_source`).

    None (bare weights are a legitimate source) gives one ExportWarning naming --tokenizer.
    """
    if explicit:
        return Path(explicit)
    if src is not None and src.is_dir():
        if (src / "tokenizer.json").is_file() or any(p.suffix in (".model", ".spiece") for p in src.iterdir()):
            return src
    where = src if src is not None else "the checkpoint"
    warnings.warn(f"{where}: no tokenizer found, so the export will not take text (`kobert run` needs one); "
                  "pass --tokenizer PATH (a SentencePiece .model/.spiece or a tokenizer folder)", ExportWarning, stacklevel=2)
    return None


def sha256_tree(root: Path, relative: str) -> dict[str, str]:
    return {f: sha256_file(root / f) for f in files_under(root, relative)}


def read_eval_set(path: str | Path) -> tuple[list[str], np.ndarray]:
    """A labelled TSV for the int8 task gate, read by the one reader (`kobert.datasets`)."""
    from kobert.datasets import read_labelled_tsv

    data = read_labelled_tsv(path)
    return data.texts, np.asarray(data.labels)


@dataclass
class EvalSet:
    """What `--eval-set` names: a task's eval data (`task` set), or a labelled TSV (`task` None)."""

    task: str | None
    data: object
    source: str  # for the report: " ner.test", " eval.tsv"
    spec: str = ""  # as given, so `kobert parity` reads the same examples again
    path: Path | None = None  # the file the examples were read from

    def record(self) -> dict:
        """The manifest's `eval_set`: what `kobert parity` re-judges the lossy tiers with."""
        return {"spec": self.spec, "path": str(self.path), "sha256": sha256_file(self.path)}


def _task_eval_file(task: str, path: str) -> Path:
    from kobert import datasets

    if path:
        return Path(path).absolute()
    if task == "nsmc":
        return datasets.locate_nsmc() / datasets.NSMC_FILES["test"]
    return datasets.task_file(task, "eval")


def load_eval_set(spec: str | Path) -> EvalSet:
    """`--eval-set`: TASK (the task's eval split in the shared data), TASK:PATH (a file in that task's
    format), or the PATH of a labelled TSV (text and label columns: accuracy, as before)."""
    from kobert import datasets
    from kobert.evaluate import TASK_METRICS

    text = str(spec)
    task, colon, path = text.partition(":")
    if task in TASK_METRICS and (colon or not Path(text).exists()):
        if path and not Path(path).is_file():
            raise ExportError(f"{path}: eval set not found")
        try:
            data = datasets.read_task_file(task, path) if path else datasets.read_task(task, "eval")
            return EvalSet(task, data, f" {Path(path).name if path else task + ' eval split'}", text,
                           _task_eval_file(task, path))
        except (FileNotFoundError, ValueError) as e:
            raise ExportError(f"--eval-set {text}: {e}") from None
    if not Path(text).is_file():
        raise ExportError(f"{text}: eval set not found (a labelled TSV, or TASK / TASK:PATH with TASK one of "
                          f"{', '.join(TASK_METRICS)})")
    texts, labels = read_eval_set(text)
    return EvalSet(None, (texts, labels), f" {Path(text).name}", str(Path(text).absolute()), Path(text).absolute())


def recorded_eval_set(export_dir: Path, manifest: dict) -> EvalSet | None:
    """The eval set an export's lossy tiers were judged on (manifest `eval_set`), read again and
    checked to be the same file (sha256); None when the export was judged without one."""
    recorded = manifest.get("eval_set")
    if not recorded:
        return None
    eval_set = load_eval_set(recorded["spec"])
    if sha256_file(eval_set.path) != recorded["sha256"]:
        raise ExportError(f"{eval_set.path}: the eval set {export_dir} was judged on has changed (sha256 "
                          f"{recorded['sha256'][:12]}... recorded in manifest.json)")
    return eval_set


def _logits_over(runtime, encoded: list[dict]) -> np.ndarray:
    return np.concatenate([runtime.run(**batch)["logits"] for batch in encoded])


def _golden_labels(outputs_of, cases, config) -> np.ndarray:
    """Every head output's predicted labels on the golden inputs (`kobert.parity.predicted_labels`)."""
    return np.concatenate([predicted_labels(outputs_of(case), case.attention_mask, config.head_outputs,
                                            config.per_token_outputs) for case in cases])


def unjudgeable(config, eval_set: EvalSet | None) -> str:
    """Why the lossy tiers' label check cannot judge this model with this eval set ("" when it can)."""
    if eval_set is not None and eval_set.task is not None:
        return ""
    if config.head == "sequence_classification" and config.num_labels == 1:
        return "a 1-label (regression) head has no labels to compare; give --eval-set sts (or sts:PATH)"
    if eval_set is not None and config.head != "sequence_classification":
        return (f"{eval_set.source.strip()}: a labelled TSV judges a sequence classifier; this model has a "
                f"{config.head!r} head (give --eval-set TASK)")
    return ""


class _TaskData:
    """What the lossy tiers' task gate compares with, computed once per export on the fp32 reference:
    the task's metrics on its eval set, the logits of a sequence classifier on a labelled TSV, or every
    head's predicted labels on the golden inputs."""

    def __init__(self, reference_runtime, cases, reference: dict, eval_set: EvalSet | None):
        from kobert.evaluate import predict_task, score

        self.eval_set, self.labels, self.source, self.cases = eval_set, None, "", cases
        self.config = reference_runtime.config
        if eval_set is not None and eval_set.task is not None:
            task, data = eval_set.task, eval_set.data
            self.reference_metrics = score(task, predict_task(task, reference_runtime, data), data)
            return
        if eval_set is None:
            self.reference_labels = _golden_labels(lambda case: reference[case.name], cases, self.config)
            return
        texts, self.labels = eval_set.data
        self.source = eval_set.source
        # The runtimes' own encoder, so the gate scores exactly what `kobert eval` and `kobert run` see.
        self.encoded = [reference_runtime.encode(texts[start:start + 32]) for start in range(0, len(texts), 32)]
        self.reference_labels = _logits_over(reference_runtime, self.encoded).argmax(-1)

    def judge(self, runtime, gate) -> tuple[str, dict, str]:
        """(check result, figures for parity.json, what the check was judged against)."""
        from kobert.evaluate import GATED_METRICS, predict_task, score

        if self.eval_set is not None and self.eval_set.task is not None:
            task, data = self.eval_set.task, self.eval_set.data
            gated = GATED_METRICS[task]
            candidate = score(task, predict_task(task, runtime, data), data)
            check, figures = metric_gate(task, gated, self.reference_metrics, candidate, gate.max_metric_delta_points,
                                         len(data), self.eval_set.source)
            limits = ", ".join(f"{m} within {gate.max_metric_delta_points[m]}" for m in gated)
            return check, figures, f"{limits} points of fp32"
        if self.eval_set is None:
            candidate = _golden_labels(lambda case: runtime.run(**case.inputs()), self.cases, self.config)
        else:
            candidate = _logits_over(runtime, self.encoded).argmax(-1)
        check, figures = task_gate(self.reference_labels, candidate, self.labels, gate.max_accuracy_delta_points,
                                   self.source)
        return check, figures, f"accuracy within {gate.max_accuracy_delta_points} points of fp32"


def verify_export(export_dir: Path, manifest: dict) -> dict[str, str]:
    """Integrity of every file the manifest records: entry name -> what is wrong (empty: all match)."""
    entries = {registry.REFERENCE: manifest.get("reference") or {},
               **{name: entry for name, entry in manifest["artifacts"].items()}}
    if manifest.get("tokenizer"):
        entries["tokenizer"] = {"files": [manifest["tokenizer"]], "sha256": manifest.get("tokenizer_sha256")}
    problems = {}
    for name, entry in entries.items():
        try:
            verify_files(export_dir, entry, name)
        except (IntegrityError, KeyError, TypeError) as e:
            problems[name] = f"integrity: {e}"
    return problems


def check_parity(export_dir: Path, manifest: dict, tolerance: float = FP32_TOLERANCE,
                 eval_set: str | Path | EvalSet | None = None, source: Path | None = None) -> ParityReport:
    """Run every artifact of an export directory against the reference outputs.

    Every file is first checked against the manifest's sha256: a file that
    differs fails its artifact (a modified reference or tokenizer fails them
    all). The reference outputs come from `source` (a Hugging Face folder)
    opened by transformers itself when given, and the `reference/` copy is then
    judged against it as its own line (`_against_source`); else from
    `reference/`. Each artifact is judged by its registry gate; int8 tiers also
    by the task gate: on `eval_set` when given (see `load_eval_set`), else on
    every head's predicted labels on the golden inputs.
    """
    from kobert import runtimes
    from kobert.config import KoBertConfig

    config = KoBertConfig.from_hf_dict(manifest["config"], source=f"{export_dir}/manifest.json")
    if eval_set is not None and not isinstance(eval_set, EvalSet):
        eval_set = load_eval_set(eval_set)
    report = ParityReport(tolerance=tolerance)
    problems = verify_export(export_dir, manifest)
    shared_problem = problems.get(registry.REFERENCE) or problems.get("tokenizer")
    if shared_problem:
        for artifact in manifest["artifacts"]:
            report.artifacts[artifact] = ArtifactParity(artifact, "-", error=shared_problem)
        return report
    with runtimes.load(export_dir, runtime="torch", verify=False) as reference_runtime:
        tokenizer = reference_runtime.tokenizer if manifest.get("tokenizer") else None
        cases = golden_cases(config.vocab_size, config.max_position_embeddings, tokenizer)
        report.reference_source = reference_note(manifest, source)
        reference = (source and _against_source(export_dir, source, config, reference_runtime, cases, report)) or {
            case.name: reference_runtime.run(**case.inputs()) for case in cases}
        task_data = None
        for number, artifact in enumerate(manifest["artifacts"], start=1):
            say(f"parity {number}/{len(manifest['artifacts'])}: {artifact}")
            target = registry.TARGETS.get(artifact)
            if target is None or artifact in problems:
                error = problems.get(artifact) or f"no such target in this version of kobert ({artifact!r})"
                report.artifacts[artifact] = ArtifactParity(artifact, target.runtime if target else "-", error=error)
                continue
            gate = GATES[target.gate].with_max_abs(tolerance)
            try:
                runtime = runtimes.load(export_dir, runtime=target.runtime, artifact=artifact, verify=False)
            except Exception as e:
                report.artifacts[artifact] = ArtifactParity(artifact, target.runtime, gate=gate, error=f"could not load: {e}")
                continue
            with runtime:
                parity = check_runtime(artifact, runtime, reference, cases, gate, config.per_token_outputs)
                if gate.task_gate and not parity.error and config.head != "none":
                    if unjudgeable(config, eval_set):
                        parity.checks["task"] = f"cannot be judged: {unjudgeable(config, eval_set)}"
                    else:  # built on first use: only an int8 tier needs the eval set's reference outputs
                        task_data = task_data or _TaskData(reference_runtime, cases, reference, eval_set)
                        parity.checks["task"], parity.task, parity.check_tolerances["task"] = task_data.judge(
                            runtime, gate)
            report.artifacts[artifact] = parity
    return report


def reference_note(manifest: dict, source: Path | None) -> str:
    """What the artifacts were judged against, in words (the report's `reference_source`)."""
    if source is not None:
        return f"transformers' from_pretrained on the source folder {source}"
    if (manifest.get("source") or {}).get("kind") == "legacy":
        return ("reference/: transformers running kobert's reading of a legacy file, which transformers cannot "
                "read itself (the names are mapped by one table, tested in tests/test_checkpoint.py; the head "
                "count is not stored and taken as 64-wide heads)")
    return "reference/ (at export it was checked bit-exact against the source read by transformers)"


def _against_source(export_dir: Path, source: Path, config, reference_runtime, cases,
                    report: ParityReport) -> dict | None:
    """The source through transformers itself gives the reference outputs; the `reference/` copy (kobert's
    reading, written back) is judged against them as its own report line: bit-exact weights, fp32 outputs.
    A source transformers cannot fully read (tensors it would make up) leaves `reference/` the judge."""
    from kobert.runtimes.torch import SourceRuntime, load_source_model, weight_differences

    architecture = config.head_spec.architecture
    model, made_up = load_source_model(source, architecture)
    if made_up:
        report.reference_source = (f"reference/: transformers would initialise {', '.join(made_up[:3])} of "
                                   f"{source} at random, so the source cannot be the judge")
        return None
    judge = SourceRuntime(model)
    outputs = {case.name: judge.run(**case.inputs()) for case in cases}
    copy = check_runtime(registry.REFERENCE, reference_runtime, outputs, cases, GATES["fp32"].with_max_abs(
        report.tolerance), config.per_token_outputs)
    differ = weight_differences(model, load_source_model(export_dir / registry.REFERENCE, architecture)[0])
    copy.checks["weights_equal_source"] = "ok" if not differ else (
        f"{len(differ)} tensors of reference/ differ from the source's: {', '.join(differ[:3])}")
    copy.check_tolerances["weights_equal_source"] = "bit-exact, both read by transformers' from_pretrained"
    report.artifacts[registry.REFERENCE] = copy
    return outputs


def export(src: str | Path, out: str | Path, targets: str | list[str] | None = None,
           tokenizer: str | Path | None = None, force: bool = False,
           tolerance: float = FP32_TOLERANCE, loaded: LoadedCheckpoint | None = None,
           eval_set: str | Path | None = None) -> ExportResult:
    """`eval_set`: the int8 task gate's data (see `load_eval_set`): a task's eval set, gated on its
    metric, or a labelled TSV, gated on accuracy; without one the gate compares int8 and fp32
    predicted labels of a sequence classifier on the golden inputs.

    `force` replaces an earlier kobert export (a folder with its manifest.json)
    or an empty folder; any other existing `out` is refused and left untouched.
    """
    targets = parse_targets(targets)
    if eval_set is not None:
        eval_set = load_eval_set(eval_set)
    out = Path(out).absolute()
    check_destination(out, force)
    loaded = loaded or load_checkpoint(src)
    if eval_set is not None and eval_set.task is not None:
        from kobert.evaluate import check_head

        try:
            check_head(eval_set.task, loaded.config)
        except ValueError as e:
            raise ExportError(f"--eval-set {eval_set.task}: {e}") from None
    tokenizer_path = find_tokenizer(loaded.path, tokenizer)

    with writing("the export", out.parent), staging_folder(out, ExportError, "the export") as staging:
        manifest = _build(loaded, staging, targets, tokenizer_path, eval_set)
        say("parity: every artifact against the transformers reference")
        source = loaded.path if loaded.path is not None and loaded.path.is_dir() else None
        report = check_parity(staging, manifest, tolerance, eval_set, source)
        if eval_set is not None:
            manifest["eval_set"] = eval_set.record()
        for name, parity in report.artifacts.items():
            (manifest["artifacts"].get(name) or manifest[registry.REFERENCE])["parity"] = parity.to_dict()
        with writing("manifest.json and parity.json", out.parent):
            write_json(staging / "manifest.json", manifest)
            write_json(staging / "parity.json", report.to_dict())
        if not report.passed:
            raise ParityFailure(report)
        move_into_place(staging, out)
    return ExportResult(out, manifest, report)


# --- the destination: never anything but our own exports is replaced ------------------------


def check_destination(out: Path, force: bool) -> None:
    """Refuse (ExportError, nothing touched) any `out` that is not free or an earlier export with --force."""
    if out.is_file() or (out.exists() and not out.is_dir()):
        raise ExportError(f"{out}: exists and is not a folder")
    parent = next((p for p in out.parents if p.exists()), None)  # the swap renames inside it
    if parent is None or not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"{parent or out}: not writable, so nothing can be exported to {out}")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise ExportError(f"{out}: exists and is not empty (use --force to replace a previous export)")
    if not is_kobert_export(out):
        raise ExportError(f"{out}: not a kobert export (no kobert manifest.json); --force replaces only an earlier "
                          "export or an empty folder, so it was left untouched")
    if Path.cwd().resolve().is_relative_to(out.resolve()):
        raise ExportError(f"{out}: is the current folder or contains it; export from elsewhere")


def is_kobert_export(folder: Path) -> bool:
    try:
        manifest = read_manifest(folder)
    except (OSError, ValueError):
        return False
    return {"config", "artifacts"} <= set(manifest)


def _build(loaded: LoadedCheckpoint, staging: Path, targets: list[str], tokenizer_path: Path | None,
           eval_set: EvalSet | None = None) -> dict:
    weights = loaded.weights
    with writing("the reference checkpoint", staging.parent):
        save_hf_checkpoint(weights, staging / "reference")
    manifest = {
        "source": loaded.source,
        "tokenizer": None,
        "config": weights.config.to_hf_dict(),
        "reference": {"files": ["reference"], "framework": _torch_version(),
                      "outputs": list(weights.config.output_names), "inputs": [],
                      "sha256": sha256_tree(staging, "reference")},
        "artifacts": {},
    }
    if tokenizer_path is not None:
        with writing("the tokenizer", staging.parent):
            _write_tokenizer(tokenizer_path, staging / "tokenizer", weights.config.vocab_size)
        manifest["tokenizer"] = "tokenizer"
        manifest["tokenizer_sha256"] = sha256_tree(staging, "tokenizer")
    order = registry.build_order(targets)
    calibration = None
    for number, name in enumerate(order, start=1):
        say(f"export {number}/{len(order)}: {name}")
        target = registry.target(name)
        if target.calibrated and calibration is None:
            from kobert.calibration import calibration_for

            calibration = calibration_for(weights.config, staging / "tokenizer" if manifest["tokenizer"] else None,
                                          eval_set)
        with writing(f"the {name} artifact", staging.parent):
            exporter = target.load_exporter()
            artifact = (exporter.export(weights, staging, calibration) if target.calibrated
                        else exporter.export(weights, staging))
        if name in targets:
            entry = artifact.manifest_entry()
            entry["sha256"] = {k: v for f in artifact.files for k, v in sha256_tree(staging, f).items()}
            manifest["artifacts"][name] = entry
    for name in set(order) - set(targets):  # built only as another's input
        shutil.rmtree(staging / name, ignore_errors=True)
    # Runtimes read manifest.json, so a provisional one is written before parity.
    with writing("manifest.json", staging.parent):
        write_json(staging / "manifest.json", manifest)
    return manifest


def _write_tokenizer(source: Path, target: Path, vocab_size: int) -> None:
    from kobert.tokenizer import SP_MODEL_NAMES, find_tokenizer_source

    recognised = find_tokenizer_source(source)
    tokenizer = recognised.load()
    if len(tokenizer) > vocab_size:
        raise ExportError(f"{source}: the tokenizer has {len(tokenizer)} ids, more than the model's "
                          f"vocabulary of {vocab_size} (a different tokenizer than the model was trained with?)")
    tokenizer.save_pretrained(str(target))
    # save_pretrained writes tokenizer.json only; in-graph tokenizers (the tf-text target) need the
    # SentencePiece model itself, so it travels with the export when the source has one.
    model = recognised.sentencepiece_model()
    if model is not None:
        (target / SP_MODEL_NAMES[0]).write_bytes(model)


def _torch_version() -> str:
    from importlib.metadata import version

    return f"torch {version('torch').split('+')[0]}"


def reparity(export_dir: str | Path, tolerance: float = FP32_TOLERANCE) -> ParityReport:
    """`kobert parity DIR`: re-check an existing export (file integrity, then parity) against its stored
    reference, the lossy tiers on the eval set the export recorded (the same file, by sha256)."""
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    return check_parity(export_dir, manifest, tolerance, recorded_eval_set(export_dir, manifest))
