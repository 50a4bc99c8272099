"""Calibration data for the static int8 tiers (NNCF's openvino-int8, ONNX Runtime's static QDQ).

Static quantization fixes every activation's int8 scale ahead of time from the ranges it sees on
calibration inputs, so those inputs must look like what the model will serve: Korean text. They
come from the export's `--eval-set` when one is given (its texts, pairs, sentences or questions
with their contexts), else from the golden texts (`assets/golden_inputs.json`) plus a shipped sample
of 300 short Korean sentences (`assets/calibration_ko.txt`: reviews, news, chat, written for this
purpose). Default tools calibrate BERTs on English SST-2, whose activation ranges a Korean
vocabulary never sees. Without a tokenizer the golden id cases are all there is.

A task eval set also gives a `TaskCheck`: the gated metric of the task, computed from any forward
function, which NNCF's accuracy control keeps within the int8 gate of fp32. Framework-free: the
exporters call `forward`, a function of the model's inputs that returns its outputs by name.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from kobert.runtimes.base import Runtime

SAMPLE = "assets/calibration_ko.txt"
MAX_ITEMS = 300  # NNCF's default subset size; also what ORT's calibration reads
MAX_LENGTH = 128  # calibration rows are cut here: serving-length ranges, at a bounded cost
# Accuracy control validates the tier this many times over; the parity gate then judges the whole set.
MAX_VALIDATION = 1000

Forward = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class TaskCheck:
    """The metric accuracy control keeps: `measure(forward, indices)` in points on those examples, and
    each example's own value where it has one (accuracy; None for F1s and correlations)."""

    metric: str
    max_drop_points: float
    examples: int
    measure: Callable[[Forward, list[int]], tuple[float, list[float] | None]]


@dataclass
class Calibration:
    items: list[dict[str, np.ndarray]]  # one encoded row each, int64, the model's named inputs
    source: str  # in words, for the manifest
    check: TaskCheck | None = None

    def record(self) -> dict:
        return {"source": self.source, "rows": len(self.items),
                **({"accuracy_control": {"metric": self.check.metric, "max_drop_points": self.check.max_drop_points,
                                         "examples": self.check.examples}} if self.check else {})}


def sample_texts() -> list[str]:
    text = resources.files("kobert").joinpath(SAMPLE).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def golden_texts() -> list[str]:
    import json

    stored = json.loads(resources.files("kobert").joinpath("assets/golden_inputs.json").read_text(encoding="utf-8"))
    return list(stored["texts"])


def eval_set_texts(eval_set) -> tuple[list[str], list[str] | None]:
    """The text (and its pair) of each example of an export's eval set, as the task feeds it."""
    data = eval_set.data
    if eval_set.task is None:  # a labelled TSV: (texts, labels)
        return list(data[0]), None
    if eval_set.task == "sts":
        return list(data.firsts), list(data.seconds)
    if eval_set.task == "ner":
        return [s.text for s in data], None
    if eval_set.task == "qa":
        return [e.question for e in data], [e.context for e in data]
    return list(data.texts), None


def encoded_rows(tokenizer_dir: Path, config, texts: list[str], pairs: list[str] | None) -> list[dict]:
    from kobert.encoding import TextEncoder

    encoder = TextEncoder(tokenizer_dir, min(config.max_position_embeddings, MAX_LENGTH), config.vocab_size)
    step = max(len(texts) // MAX_ITEMS, 1)  # spread over the whole set, not its first rows
    chosen = list(range(0, len(texts), step))[:MAX_ITEMS]
    return [encoder.encode([texts[i]], None if pairs is None else [pairs[i]]) for i in chosen]


def calibration_for(config, tokenizer_dir: Path | None, eval_set=None) -> Calibration:
    """Calibration rows for a model: the eval set's, else golden texts + the Korean sample, else golden ids."""
    from kobert.parity import golden_cases

    if tokenizer_dir is None:
        cases = golden_cases(config.vocab_size, min(config.max_position_embeddings, MAX_LENGTH))
        items = [{k: v[i:i + 1] for k, v in case.inputs().items()} for case in cases for i in range(len(case.input_ids))]
        return Calibration(items, "the golden id cases (no tokenizer)")
    if eval_set is not None:
        texts, pairs = eval_set_texts(eval_set)
        return Calibration(encoded_rows(tokenizer_dir, config, texts, pairs), f"eval set{eval_set.source}",
                           task_check(config, tokenizer_dir, eval_set))
    return Calibration(encoded_rows(tokenizer_dir, config, golden_texts() + sample_texts(), None),
                       f"golden texts + {SAMPLE}")


def subset(data, indices: list[int]):
    """The eval examples at `indices`: a list's items, or every list field of a dataclass."""
    if isinstance(data, tuple):  # a labelled TSV
        return tuple([part[i] for i in indices] for part in data)
    if isinstance(data, list):
        return [data[i] for i in indices]
    lists = {f.name: [getattr(data, f.name)[i] for i in indices]
             for f in dataclasses.fields(data) if isinstance(getattr(data, f.name), list)}
    return dataclasses.replace(data, **lists)


def task_check(config, tokenizer_dir: Path, eval_set) -> TaskCheck | None:
    """The gated metric of a task eval set, or accuracy on a labelled TSV (a sequence classifier)."""
    from kobert.evaluate import GATED_METRICS, predict_task, score
    from kobert.parity import GATES

    gate = GATES["int8"]
    encoder = ForwardRuntime(config, tokenizer_dir, None).text_encoder  # loaded once, not per validation call

    def runtime_over(forward):
        runtime = ForwardRuntime(config, tokenizer_dir, forward)
        runtime._encoder = encoder
        return runtime

    examples = min(_length(eval_set.data), MAX_VALIDATION)
    if eval_set.task is None:
        if config.head != "sequence_classification" or config.num_labels < 2:
            return None

        def measure(forward, indices):
            texts, labels = subset(eval_set.data, indices)
            correct = 100.0 * (runtime_over(forward).logits(texts).argmax(-1) == np.asarray(labels))
            return float(correct.mean()), correct.tolist()

        return TaskCheck("accuracy", gate.max_accuracy_delta_points, examples, measure)
    task = eval_set.task
    metric = GATED_METRICS[task][0]

    def measure(forward, indices):
        data = subset(eval_set.data, indices)
        return float(score(task, predict_task(task, runtime_over(forward), data), data)[metric]), None

    return TaskCheck(metric, gate.max_metric_delta_points[metric], examples, measure)


def _length(data) -> int:
    if isinstance(data, tuple):  # a labelled TSV: (texts, labels)
        return len(data[0])
    if isinstance(data, list):
        return len(data)
    return len(next(getattr(data, f.name) for f in dataclasses.fields(data) if isinstance(getattr(data, f.name), list)))


class ForwardRuntime(Runtime):
    """A Runtime over a forward function, not an export: the task code (`predict_task`) scores a model
    being quantized exactly as it scores an exported artifact."""

    name = "calibration"

    def __init__(self, config, tokenizer_dir: Path, forward: Forward):  # noqa: super().__init__ reads an export
        self.export_dir, self.manifest = tokenizer_dir.parent, {"tokenizer": tokenizer_dir.name}
        self.config, self.artifact, self.entry, self.verify, self.threads = config, "calibration", {}, False, None
        self.output_names = list(config.output_names)
        self.max_length = config.max_position_embeddings
        self._encoder = self._tokenizer = None
        self._tokenizer_lock = threading.Lock()
        self._forward_function = forward

    def _forward(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._forward_function(inputs)
