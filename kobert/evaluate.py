"""`kobert eval nsmc|ynat|ner|sts|qa DIR`: a task's metric for one export through every runtime, side by side.

The texts are tokenized once with the export's tokenizer; every runtime then
classifies the same batches, so any difference in accuracy comes from the
runtime, not the input. Agreement is the share of predictions identical to the
torch reference's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np



def runs(manifest: dict) -> list[tuple[str, str]]:
    """(runtime, artifact) for the torch reference, then every artifact of the export (registry order)."""
    from kobert import registry

    return [("torch", registry.REFERENCE)] + [(registry.TARGETS[name].runtime, name) for name in registry.TARGETS
                                              if name in manifest["artifacts"]]


def selected_runs(export_dir, runtime: str | None = None, artifact: str | None = None) -> list[tuple[str, str]] | None:
    """`kobert eval --runtime/--artifact`: torch (the reference agreement is measured against) and the one
    run asked for; `auto` is the export's fastest passing artifact here (`kobert.runtimes.auto`), said on
    stderr. None when neither is given: every artifact."""
    from kobert import registry
    from kobert.progress import say
    from kobert.runtimes.base import read_manifest

    if runtime is None and artifact is None:
        return None
    if runtime == "auto":
        from kobert.runtimes.auto import choose

        choice = choose(export_dir)
        say(choice.reason)
        runtime, artifact = choice.runtime, choice.artifact
    have = read_manifest(export_dir)["artifacts"]
    if artifact is None:
        opened = [name for name, target in registry.TARGETS.items() if target.runtime == runtime and name in have]
        if runtime == "torch":
            opened = [registry.REFERENCE]
        if not opened:
            raise ValueError(f"{export_dir}: no artifact here is opened by runtime {runtime!r} (it has {', '.join(have)})")
        artifact = opened[0]
    runtime = runtime or registry.runtimes_for(artifact)[0]
    chosen = (runtime, artifact)
    return [("torch", registry.REFERENCE)] + ([chosen] if chosen != ("torch", registry.REFERENCE) else [])


@dataclass
class RuntimeAccuracy:
    name: str
    accuracy: float
    agreement: float
    seconds: float


def _batches(encoded: dict[str, np.ndarray], lengths: np.ndarray, batch_size: int):
    """Batches of similar length (sorted), each cut to its longest row: no work on padding."""
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = int(lengths[rows].max())
        yield rows, {name: array[rows, :width] for name, array in encoded.items()}


def predict(runtime, encoded: dict[str, np.ndarray], lengths: np.ndarray, batch_size: int) -> np.ndarray:
    predictions = np.empty(len(lengths), dtype=np.int64)
    for rows, batch in _batches(encoded, lengths, batch_size):
        predictions[rows] = runtime.run(**batch)["logits"].argmax(-1)
    return predictions


def evaluate_export(export_dir, texts: list[str], labels: list[int], batch_size: int = 128,
                    which: list[tuple[str, str]] | None = None) -> list[RuntimeAccuracy]:
    from kobert import runtimes
    from kobert.progress import say
    from kobert.runtimes.base import read_manifest

    labels = np.asarray(labels)
    results, reference = [], None
    encoded = lengths = None
    for runtime_name, artifact in which or runs(read_manifest(export_dir)):
        say(f"eval: {artifact} ({runtime_name})")
        with runtimes.load(export_dir, runtime=runtime_name, artifact=artifact) as runtime:
            if encoded is None:
                encoded = runtime.encode(texts)
                lengths = encoded["attention_mask"].sum(axis=1)
            start = time.perf_counter()
            predictions = predict(runtime, encoded, lengths, batch_size)
            seconds = time.perf_counter() - start
        reference = predictions if reference is None else reference
        results.append(RuntimeAccuracy(runtime_name if artifact == "reference" else artifact, float((predictions == labels).mean()),
                                       float((predictions == reference).mean()), seconds))
    return results


def agreement_floor(name: str) -> float:
    """The least agreement with torch an artifact may show: its parity gate's (`ParityGate.agreement_floor`:
    99.9 % for exact artifacts, 99.7 % for the lossy tiers); the torch reference itself is exact."""
    from kobert import registry
    from kobert.parity import EXACT_AGREEMENT_FLOOR, GATES

    target = registry.TARGETS.get(name)
    return GATES[target.gate].agreement_floor if target is not None else EXACT_AGREEMENT_FLOOR


def below_floor(results: list, min_agreement: float | None = None) -> list[str]:
    """The runtimes whose agreement with torch is under their floor (`min_agreement` for all, when given)."""
    found = []
    for r in results:
        floor = agreement_floor(r.name) if min_agreement is None else min_agreement
        if not r.agreement >= floor:
            found.append(f"{r.name}: agreement with torch {100 * r.agreement:.3f} % < {100 * floor:.1f} %")
    return found


def table(results: list[RuntimeAccuracy], examples: int) -> str:
    rows = [f"| runtime | accuracy ({examples:,} reviews) | agreement with torch | seconds |", "|---|---|---|---|"]
    rows += [f"| {r.name} | {100 * r.accuracy:.2f} % | {100 * r.agreement:.3f} % | {r.seconds:.1f} |" for r in results]
    return "\n".join(rows)


def results_record(task: str, results: list, examples: int, command: str) -> dict:
    """What `kobert eval ... --json FILE` writes: the table's figures with their date, command and CPU
    (the schema `benchmarks/figures.py` renders; accuracy/metrics in points)."""
    from kobert.bench.measure import cpu_info, cpu_line

    rows = []
    for r in results:
        row = {"runtime": r.name}
        if isinstance(r, RuntimeAccuracy):
            row["accuracy_percent"] = round(100 * r.accuracy, 2)
        else:
            row["metrics"] = {k: round(v, 2) for k, v in r.metrics.items()}
        rows.append({**row, "agreement_percent": round(100 * r.agreement, 3), "seconds": round(r.seconds, 1)})
    return {"source": "written by the command below", "date": time.strftime("%Y-%m-%d"), "command": command,
            "cpu": cpu_line(cpu_info()).removeprefix("CPU: "), "examples": examples, "task": task, "results": rows}


# --- every task: `kobert eval ynat|ner|sts|qa DIR` -------------------------------------------------
#
# One function per task turns a runtime and the task's eval data into predictions
# (through the runtime API, so what is scored is what `kobert run` prints); `score`
# turns predictions into the task's metrics, `agreement` compares them with torch's.

# The metric each task is known by, first; the rest are shown beside it.
TASK_METRICS = {
    "nsmc": ("accuracy",),
    "ynat": ("macro_f1",),
    "ner": ("entity_f1", "precision", "recall"),
    "sts": ("spearman", "bi_encoder_spearman"),
    "qa": ("exact_match", "f1"),
}
# What the lossy tiers' task gate holds to fp32 (kobert.parity.metric_gate).
GATED_METRICS = {"nsmc": ("accuracy",), "ynat": ("macro_f1",), "ner": ("entity_f1",), "sts": ("spearman",),
                 "qa": ("exact_match", "f1")}
TASK_HEADS = {"nsmc": "sequence_classification", "ynat": "sequence_classification",
              "ner": "token_classification", "sts": "sequence_classification", "qa": "question_answering"}
# Regression scores (STS) count as the same prediction as torch's within this much.
SCORE_AGREEMENT = 1e-3
# `kobert eval qa` (and fine-tuning's score, and the int8 task gate) scores the answer's own tokens,
# not the pipeline's default of widening it to whole whitespace words (`kobert run`, `rt.answer`).
# A Korean word carries its particles: gold "세종대왕" sits in "세종대왕이", so word alignment turns
# a right answer into an EM miss and dilutes F1. Token spans are also what fine-tuning trains
# (kobert.tasks.answer_tokens) and what SQuAD-style evaluation reads (offset mappings).
# Not yet measured both ways on KorQuAD: see benchmarks/korquad_alignment.py.
QA_ALIGN_TO_WORDS = False


@dataclass
class TaskScore:
    name: str  # the runtime, or the artifact when a runtime opens several
    metrics: dict[str, float]  # in points (x 100)
    agreement: float  # share of predictions equal to torch's
    seconds: float


def check_head(task: str, config) -> None:
    head = TASK_HEADS[task]
    if config.head != head or (task == "sts") != (config.num_labels == 1):
        what = "a 1-label regression head" if task == "sts" else f"a {head} head"
        raise ValueError(f"{task} needs {what}; this model has {config.head!r} with {config.num_labels} labels")


def predict_task(task: str, runtime, data, batch_size: int = 64):
    """The runtime's predictions on a task's eval data (see `score` for what each holds)."""
    from kobert import tasks

    check_head(task, runtime.config)
    if task in ("nsmc", "ynat"):
        label2id = {name: i for i, name in runtime.config.id2label.items()}
        return [label2id.get(row["label"], -1) for _, row in tasks.iter_labels(runtime, data.texts, batch_size=batch_size)]
    if task == "sts":
        cross = [row["score"] for _, row in tasks.iter_labels(runtime, data.firsts, data.seconds, batch_size)]
        bi = list(tasks.iter_similarities(runtime, data.firsts, data.seconds, "mean", batch_size))
        return {"cross": cross, "bi": bi}
    if task == "ner":
        return list(ner_tags(runtime, data, batch_size))
    if task == "qa":
        rows = ((e.question, e.context) for e in data)
        answers = tasks.iter_answers(runtime, rows, batch_size=batch_size, align_to_words=QA_ALIGN_TO_WORDS)
        return [answer for _, answer in answers]
    raise ValueError(f"unknown task {task!r}")


def ner_tags(runtime, sentences, batch_size: int = 64):
    """(predicted tags, gold tags) per sentence, over its non-special tokens: the runtime's top label per
    token, and the gold character spans projected onto the same tokens (kobert.tasks.token_tags)."""
    from kobert import tasks

    encoder = runtime.text_encoder
    labels = runtime.config.id2label

    def encode(window):
        return [[e] for e in encoder.encodings([s.text for s in window])]

    for sentence, [(encoding, outputs)] in runtime.stream_encoded(sentences, encode, batch_size, keep=("logits",)):
        gold = tasks.token_tags(sentence.text, encoding, sentence.spans)
        best = outputs["logits"].argmax(-1)
        predicted = [tasks.label_name(labels, int(best[i])) for i, g in enumerate(gold) if g is not None]
        yield predicted, [g for g in gold if g is not None]


def score(task: str, predictions, data) -> dict[str, float]:
    from kobert import metrics

    if task == "nsmc":
        return {"accuracy": 100 * metrics.accuracy(predictions, data.labels)}
    if task == "ynat":
        from kobert.datasets import YNAT_LABELS

        return {"macro_f1": 100 * metrics.macro_f1(predictions, data.labels, len(YNAT_LABELS))}
    if task == "sts":
        return {"spearman": 100 * metrics.spearman(predictions["cross"], data.scores),
                "bi_encoder_spearman": 100 * metrics.spearman(predictions["bi"], data.scores)}
    if task == "ner":
        found = metrics.entity_f1([p for p, _ in predictions], [g for _, g in predictions])
        return {"entity_f1": 100 * found["f1"], "precision": 100 * found["precision"], "recall": 100 * found["recall"]}
    if task == "qa":
        return metrics.korquad_scores([p["answer"] for p in predictions], [[t for t, _ in e.answers] for e in data])
    raise ValueError(f"unknown task {task!r}")


def agreement(task: str, predictions, reference) -> float:
    """Share of predictions equal to the reference's: labels, tags (per token), answers (text and
    place), or regression scores within SCORE_AGREEMENT."""
    if task == "sts":
        same = np.abs(np.asarray(predictions["cross"]) - np.asarray(reference["cross"])) <= SCORE_AGREEMENT
    elif task == "ner":
        same = np.array([a == b for p, r in zip(predictions, reference) for a, b in zip(p[0], r[0])])
    elif task == "qa":
        same = np.array([(p["answer"], p["start"]) == (r["answer"], r["start"]) for p, r in zip(predictions, reference)])
    else:
        same = np.asarray(predictions) == np.asarray(reference)
    return float(same.mean()) if same.size else 1.0


def evaluate_task(export_dir, task: str, data, batch_size: int = 64,
                  which: list[tuple[str, str]] | None = None) -> list[TaskScore]:
    """The task's metrics through every runtime of an export (torch first), and agreement with torch."""
    from kobert import runtimes
    from kobert.progress import say
    from kobert.runtimes.base import read_manifest

    results, reference = [], None
    for runtime_name, artifact in which or runs(read_manifest(export_dir)):
        say(f"eval {task}: {artifact} ({runtime_name})")
        with runtimes.load(export_dir, runtime=runtime_name, artifact=artifact) as runtime:
            start = time.perf_counter()
            predictions = predict_task(task, runtime, data, batch_size)
            seconds = time.perf_counter() - start
        reference = predictions if reference is None else reference
        results.append(TaskScore(runtime_name if artifact == "reference" else artifact, score(task, predictions, data),
                                 agreement(task, predictions, reference), seconds))
    return results


def task_table(task: str, results: list[TaskScore], examples: int) -> str:
    names = TASK_METRICS[task]
    rows = [f"{task}: {examples:,} eval examples; metrics in points (x 100)", "",
            f"| runtime | {' | '.join(names)} | agreement with torch | seconds |",
            "|---|" + "---|" * (len(names) + 2)]
    rows += [f"| {r.name} | {' | '.join(f'{r.metrics[n]:.2f}' for n in names)} | {100 * r.agreement:.3f} % | "
             f"{r.seconds:.1f} |" for r in results]
    return "\n".join(rows)
