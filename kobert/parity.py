"""The parity engine: pure numpy, knows no framework.

It receives outputs (dicts of arrays by output name), compares them with the
reference and returns report objects; printing and exit codes belong to the CLI.

What is compared, per golden case:
- `last_hidden_state` and per-token logits (`logits` of token classification,
  `start_logits`, `end_logits`) on valid positions only (attention_mask == 1):
  padded positions carry no meaning, and frameworks may differ there;
- `pooler_output` and sequence logits in full.
Figures: max-abs, mean-abs, max-rel (= max-abs / max |reference|, the error
relative to the output's own scale) and the minimum cosine similarity over rows
(tokens or sequences).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from importlib import resources

import numpy as np

# fp32 hard failure above this max-abs; the target is 1e-5.
FP32_TOLERANCE = 1e-4
# A derived output the lossy tiers are judged on: last_hidden_state averaged over valid tokens.
MEAN_EMBEDDING = "mean_embedding"
# A span head's start/end logits hold one number per token, so a per-token cosine only compares signs;
# the lossy tiers judge them as one vector per sequence (padded positions set to 0 on both sides).
SPAN_ROWS = {"start_logits": "start_logits_by_sequence", "end_logits": "end_logits_by_sequence"}
# The head outputs a lossy tier's head cosine judges (`logits` per row, or per valid token for NER).
HEAD_COSINE_OUTPUTS = ("logits", *SPAN_ROWS.values())
# `kobert eval`'s floor for an exact (fp32) artifact: predictions may differ from torch's only on ties.
EXACT_AGREEMENT_FLOOR = 0.999


# How far a lossy tier's task metric may fall from fp32's, in points (x 100), on the task's eval set:
# classification 0.3, the span and ranking metrics 0.5.
TASK_METRIC_POINTS = {"accuracy": 0.3, "macro_f1": 0.3, "entity_f1": 0.5, "exact_match": 0.5, "f1": 0.5,
                      "spearman": 0.5}


@dataclass(frozen=True)
class ParityGate:
    """What one tier must meet; plain fp32 artifacts are judged by GATES["fp32"] (max-abs only).

    max_abs applies to every output; min_cosine to `cosine_outputs` (the sentence
    embeddings a user keeps: pooled output and the mean over valid tokens);
    head_min_cosine to the head outputs a user consumes (`HEAD_COSINE_OUTPUTS`);
    task_gate asks for the label check of `task_gate` below.
    """

    tier: str
    max_abs: float | None = FP32_TOLERANCE
    min_cosine: float | None = None
    cosine_outputs: tuple[str, ...] = ("pooler_output", MEAN_EMBEDDING)
    head_min_cosine: float | None = None
    task_gate: bool = False
    max_accuracy_delta_points: float = 0.3
    # On a task's own eval set (`--eval-set TASK[:PATH]`): each gated metric within these points of fp32.
    max_metric_delta_points: dict[str, float] = field(default_factory=lambda: dict(TASK_METRIC_POINTS))

    def output_failures(self, name: str, s: "OutputStats") -> list[str]:
        found = []
        if self.max_abs is not None and not s.max_abs <= self.max_abs:
            found.append(f"max-abs {s.max_abs:.2e} > {self.max_abs:.0e}")
        if self.min_cosine is not None and name in self.cosine_outputs and not s.min_cosine >= self.min_cosine:
            found.append(f"min cosine {s.min_cosine:.7f} < {self.min_cosine}")
        if (self.head_min_cosine is not None and name in HEAD_COSINE_OUTPUTS
                and not s.min_cosine >= self.head_min_cosine):
            found.append(f"min cosine {s.min_cosine:.7f} < {self.head_min_cosine}")
        return found

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def judges_embeddings(self) -> bool:
        """Cosine gates also judge the mean embedding, the vector a user keeps from the hidden states."""
        return self.min_cosine is not None

    def describe(self) -> str:
        """The tolerance in words, for the report: what a check passed or failed against."""
        parts = [] if self.max_abs is None else [f"max-abs <= {self.max_abs:.0e}"]
        if self.min_cosine is not None:
            parts.append(f"min cosine >= {self.min_cosine} on {', '.join(self.cosine_outputs)}")
        if self.head_min_cosine is not None:
            parts.append(f"min cosine >= {self.head_min_cosine} on the head outputs")
        return "; ".join(parts)

    @property
    def agreement_floor(self) -> float:
        """`kobert eval`'s least share of predictions equal to torch's: exact artifacts differ only on
        ties; a lossy tier may lose what its task gate allows (0.3 points: 99.7 %)."""
        if self.max_abs is not None:
            return EXACT_AGREEMENT_FLOOR
        return 1.0 - self.max_accuracy_delta_points / 100

    def with_max_abs(self, tolerance: float) -> "ParityGate":
        return self if self.max_abs is None else replace(self, max_abs=tolerance)


# tier name -> gate. "fp32-fused": ONNX Runtime fusions, exact GELU; an approximated GELU would be
# its own tier. The lossy tiers are judged by cosine on embeddings and on every head output (logits,
# per valid token for NER, start/end per sequence for QA), int8 also on predicted labels. The head
# cosines: int8 0.99 (the shipped default's int8 logits measured 0.9965 and 0.9988), fp16/bf16 0.999.
GATES = {
    "fp32": ParityGate("fp32"),
    "fp32-fused": ParityGate("fp32-fused", max_abs=FP32_TOLERANCE, min_cosine=0.99999),
    "fp16": ParityGate("fp16", max_abs=None, min_cosine=0.9999, head_min_cosine=0.999),
    "int8": ParityGate("int8", max_abs=None, min_cosine=0.999, head_min_cosine=0.99, task_gate=True),
    # bfloat16 matmuls (torch autocast): held to the fp16 gate.
    "bf16": ParityGate("bf16", max_abs=None, min_cosine=0.9999, head_min_cosine=0.999),
}


@dataclass
class OutputStats:
    max_abs: float = 0.0
    mean_abs: float = 0.0
    max_rel: float = 0.0
    min_cosine: float = 1.0
    values: int = 0

    def merge(self, other: "OutputStats") -> "OutputStats":
        total = self.values + other.values
        mean = (self.mean_abs * self.values + other.mean_abs * other.values) / max(total, 1)
        return OutputStats(max(self.max_abs, other.max_abs), mean, max(self.max_rel, other.max_rel),
                           min(self.min_cosine, other.min_cosine), total)


@dataclass
class ArtifactParity:
    artifact: str
    runtime: str
    gate: ParityGate = GATES["fp32"]
    outputs: dict[str, OutputStats] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)  # check name -> "ok" or what failed
    check_tolerances: dict[str, str] = field(default_factory=dict)  # check name -> what it was judged against
    error: str = ""
    task: dict = field(default_factory=dict)  # the int8 task gate's figures and what they were measured on

    @property
    def tolerance(self) -> float | None:
        return self.gate.max_abs

    def output_failures(self, name: str, s: OutputStats) -> list[str]:
        return self.gate.output_failures(name, s)

    @property
    def failures(self) -> list[str]:
        found = [f"{self.artifact}: {self.error}"] if self.error else []
        found += [f"{self.artifact}.{name}: {reason}"
                  for name, s in self.outputs.items() for reason in self.output_failures(name, s)]
        found += [f"{self.artifact}: {name}: {result}" for name, result in self.checks.items() if result != "ok"]
        return found

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {"runtime": self.runtime, "passed": self.passed, "tolerance": self.tolerance,
                "outputs": {k: asdict(v) for k, v in self.outputs.items()}, "checks": self.checks,
                "check_tolerances": {"outputs": self.gate.describe(), **self.check_tolerances},
                "gate": self.gate.to_dict(),
                **({"error": self.error} if self.error else {}),
                **({"task": self.task} if self.task else {})}


@dataclass
class ParityReport:
    artifacts: dict[str, ArtifactParity] = field(default_factory=dict)
    tolerance: float = FP32_TOLERANCE  # the fp32 max-abs every max-abs gate used
    reference_source: str = ""  # what the reference outputs came from, in words

    @property
    def passed(self) -> bool:
        return bool(self.artifacts) and all(a.passed for a in self.artifacts.values())

    @property
    def failures(self) -> list[str]:
        return [f for a in self.artifacts.values() for f in a.failures]

    def to_dict(self) -> dict:
        return {"passed": self.passed, "tolerance": self.tolerance, "reference_source": self.reference_source,
                "artifacts": {name: a.to_dict() for name, a in self.artifacts.items()}}

    def table(self) -> str:
        """Markdown table: one row per artifact x output."""
        rows = ["| artifact | runtime | output | max-abs | mean-abs | max-rel | min cosine | result |",
                "|---|---|---|---|---|---|---|---|"]
        if self.reference_source:
            rows.append(f"| (judged against) | | {self.reference_source} | | | | | |")
        for name, a in self.artifacts.items():
            if a.error:
                rows.append(f"| {name} | {a.runtime} | - | - | - | - | - | FAIL: {a.error} |")
            for output, s in a.outputs.items():
                verdict = "FAIL" if a.output_failures(output, s) else "ok"
                rows.append(f"| {name} | {a.runtime} | {output} | {s.max_abs:.2e} | {s.mean_abs:.2e} | "
                            f"{s.max_rel:.2e} | {s.min_cosine:.7f} | {verdict} |")
            for check, result in a.checks.items():
                rows.append(f"| {name} | {a.runtime} | {check} | | | | | {result} |")
        return "\n".join(rows)


# --- comparing arrays ---------------------------------------------------------


def _rows(array: np.ndarray, per_token: bool, mask: np.ndarray) -> np.ndarray:
    """The rows to compare: valid token vectors for per-token outputs, whole rows otherwise."""
    if per_token:
        valid = mask.astype(bool)
        selected = array[valid]
        return selected.reshape(len(selected), -1)
    return array.reshape(array.shape[0], -1)


def compare(reference: np.ndarray, candidate: np.ndarray, per_token: bool, attention_mask: np.ndarray) -> OutputStats:
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        return OutputStats(max_abs=float("inf"), mean_abs=float("inf"), max_rel=float("inf"), min_cosine=-1.0)
    ref, cand = _rows(reference, per_token, attention_mask), _rows(candidate, per_token, attention_mask)
    if ref.size == 0:
        return OutputStats()
    diff = np.abs(ref - cand)
    if not np.all(np.isfinite(cand)):
        return OutputStats(max_abs=float("inf"), mean_abs=float("inf"), max_rel=float("inf"), min_cosine=-1.0, values=ref.size)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cosine = np.where(norms > 0, (ref * cand).sum(axis=1) / np.maximum(norms, 1e-30), 1.0)
    scale = max(float(np.abs(ref).max()), 1e-30)
    return OutputStats(max_abs=float(diff.max()), mean_abs=float(diff.mean()),
                       max_rel=float(diff.max() / scale), min_cosine=float(cosine.min()), values=int(ref.size))


def compare_all(reference: dict, candidate: dict, attention_mask: np.ndarray, into: dict[str, OutputStats],
                per_token: tuple[str, ...]) -> None:
    for name, ref in reference.items():
        if name not in candidate:
            into[name] = OutputStats(max_abs=float("inf"), mean_abs=float("inf"), max_rel=float("inf"), min_cosine=-1.0)
            continue
        stats = compare(ref, candidate[name], name in per_token, attention_mask)
        into[name] = into[name].merge(stats) if name in into else stats


# --- golden inputs --------------------------------------------------------------


@dataclass
class GoldenCase:
    name: str
    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    # the texts the ids were encoded from (the Korean cases), for runtimes that tokenize themselves
    texts: tuple[str, ...] | None = None
    pairs: tuple[str, ...] | None = None

    def inputs(self) -> dict[str, np.ndarray]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "token_type_ids": self.token_type_ids}


def golden_cases(vocab_size: int = 8002, max_length: int = 512, tokenizer=None) -> list[GoldenCase]:
    """The golden inputs stored in the repo, fitted to a model's vocabulary and positions.

    Ids at or above a smaller vocabulary wrap into it (specials 0-4 stay);
    cases longer than the model's positions are cut to fit. With a tokenizer,
    the stored Korean texts are encoded too (single sentences and a pair).
    """
    stored = json.loads(resources.files("kobert").joinpath("assets/golden_inputs.json").read_text(encoding="utf-8"))
    cases = []
    for case in stored["cases"]:
        arrays = [np.asarray(case[k], dtype=np.int64)[:, :max_length] for k in ("input_ids", "attention_mask", "token_type_ids")]
        ids = arrays[0]
        ids = np.where(ids >= vocab_size, 5 + (ids - 5) % max(vocab_size - 5, 1), ids)
        cases.append(GoldenCase(case["name"], ids, arrays[1], arrays[2]))
    if tokenizer is not None:
        texts = stored["texts"]
        for name, first, second in (("korean_texts", texts, None), ("korean_pairs", texts[:3], texts[3:6])):
            encoded = tokenizer(first, second, padding=True, truncation=True, max_length=max_length, return_tensors="np")
            cases.append(GoldenCase(name, encoded["input_ids"].astype(np.int64), encoded["attention_mask"].astype(np.int64),
                                    encoded["token_type_ids"].astype(np.int64), tuple(first),
                                    None if second is None else tuple(second)))
    return cases


# --- checking one runtime ---------------------------------------------------------


def mean_embedding(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(attention_mask, dtype=np.float64)[..., None]
    return (np.asarray(hidden, dtype=np.float64) * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)


def check_runtime(artifact: str, runtime, reference: dict[str, dict[str, np.ndarray]], cases: list[GoldenCase],
                  gate: ParityGate, per_token: tuple[str, ...]) -> ArtifactParity:
    """Compare a runtime (anything with `.name` and `.run(**inputs)`) against reference outputs.

    `per_token`: the outputs with one row per token (`KoBertConfig.per_token_outputs`),
    compared on valid tokens only. Besides the per-output figures: batch
    invariance (each row of the largest batch run alone gives what it gave
    inside the batch, judged by the same gate: a quantized model's activation
    scales depend on the batch) and determinism (the same input twice gives
    bit-identical output).
    """
    result = ArtifactParity(artifact, runtime.name, gate=gate)
    result.check_tolerances = {"batch_invariance": gate.describe(), "determinism": "bit-identical"}
    try:
        first_outputs = {}
        for case in cases:
            outputs = runtime.run(**case.inputs())
            first_outputs[case.name] = outputs
            compare_all(_judged(reference[case.name], case.attention_mask, gate),
                        _judged(outputs, case.attention_mask, gate), case.attention_mask, result.outputs, per_token)
        batch_case = max(cases, key=lambda c: c.input_ids.shape[0])
        result.checks["batch_invariance"] = _batch_invariance(runtime, batch_case, first_outputs[batch_case.name],
                                                              gate, per_token)
        again = runtime.run(**batch_case.inputs())
        identical = all(np.array_equal(again[k], first_outputs[batch_case.name][k]) for k in again)
        result.checks["determinism"] = "ok" if identical else "same input twice gave different outputs"
        if getattr(runtime, "tokenizes_in_graph", False):
            result.checks["text_path"] = check_text_path(runtime, reference, cases, gate, per_token)
            result.check_tolerances["text_path"] = (f"ids equal to the tokenizer's on the golden texts (a reordering "
                                                    f"of exactly tied pieces excepted); outputs {gate.describe()}")
    except Exception as e:  # a runtime that cannot run the inputs fails parity, with the reason
        result.error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    return result


def check_text_path(runtime, reference: dict[str, dict[str, np.ndarray]], cases: list[GoldenCase],
                    gate: ParityGate, per_token: tuple[str, ...]) -> str:
    """A runtime that tokenizes in its own graph (`runtime.run_texts(texts, pairs)` -> outputs and ids),
    judged on the golden texts: its ids must be the tokenizer's, and where they are, its outputs must
    meet the gate. A row whose ids are the same pieces in another order is an exact score tie, which
    two Viterbi implementations may break differently (see kobert.tokenizer); it is not compared."""
    stats: dict[str, OutputStats] = {}
    text_cases = [c for c in cases if c.texts is not None]
    if not text_cases:
        return "no golden texts to check it on (the export has no tokenizer)"
    for case in text_cases:
        got = runtime.run_texts(list(case.texts), None if case.pairs is None else list(case.pairs))
        want_ids, got_ids = case.input_ids, np.asarray(got["input_ids"])
        if got_ids.shape != want_ids.shape:
            return f"{case.name}: the graph built ids of shape {got_ids.shape}, the tokenizer {want_ids.shape}"
        equal = [row for row in range(len(want_ids)) if np.array_equal(got_ids[row], want_ids[row])]
        for row in sorted(set(range(len(want_ids))) - set(equal)):
            if sorted(got_ids[row]) != sorted(want_ids[row]):
                return f"{case.name} row {row}: the graph's ids differ from the tokenizer's ({case.texts[row]!r})"
        for name in ("attention_mask", "token_type_ids"):
            if not np.array_equal(np.asarray(got[name]), getattr(case, name)):
                return f"{case.name}: the graph's {name} differs from the tokenizer's"
        mask = case.attention_mask[equal]
        compare_all(_judged({k: v[equal] for k, v in reference[case.name].items()}, mask, gate),
                    _judged({k: np.asarray(got[k])[equal] for k in reference[case.name]}, mask, gate),
                    mask, stats, per_token)
    failed = [f"{name}: {reason}" for name, s in stats.items() for reason in gate.output_failures(name, s)]
    return "ok" if not failed else "text path outputs: " + "; ".join(failed)


def _judged(outputs: dict, attention_mask: np.ndarray, gate: ParityGate) -> dict:
    """The outputs a gate judges: all of them, plus for cosine gates the mean embedding and a span
    head's start/end logits as one row per sequence."""
    if not gate.judges_embeddings:
        return outputs
    derived = {row_name: np.where(attention_mask.astype(bool), np.asarray(outputs[name], dtype=np.float64), 0.0)
               for name, row_name in SPAN_ROWS.items() if name in outputs}
    if "last_hidden_state" in outputs:
        derived[MEAN_EMBEDDING] = mean_embedding(outputs["last_hidden_state"], attention_mask)
    return {**outputs, **derived}


def _batch_invariance(runtime, case: GoldenCase, batched: dict[str, np.ndarray], gate: ParityGate,
                      per_token: tuple[str, ...]) -> str:
    stats: dict[str, OutputStats] = {}
    for row in range(case.input_ids.shape[0]):
        length = int(case.attention_mask[row].sum()) or 1
        mask = case.attention_mask[row:row + 1, :length]
        alone = runtime.run(case.input_ids[row:row + 1, :length], mask, case.token_type_ids[row:row + 1, :length])
        inside = {name: value[row:row + 1, :length] if name in per_token else value[row:row + 1]
                  for name, value in batched.items()}
        compare_all(_judged(inside, mask, gate), _judged(alone, mask, gate), mask, stats, per_token)
    failed = [f"{name}: {reason}" for name, s in stats.items() for reason in gate.output_failures(name, s)]
    return "ok" if not failed else "a row alone differs from the same row in a batch: " + "; ".join(failed)


# --- the int8 task gate ------------------------------------------------------------


def predicted_labels(outputs: dict, attention_mask: np.ndarray, head_outputs: tuple[str, ...],
                     per_token: tuple[str, ...]) -> np.ndarray:
    """What a user reads off each head output: the top label per sequence (`logits`), per valid token
    (token classification), or the best valid position per sequence (a span's start and end)."""
    valid = np.asarray(attention_mask).astype(bool)
    labels = []
    for name in head_outputs:
        value = np.asarray(outputs[name], dtype=np.float64)
        if name in per_token and value.ndim == 3:
            labels.append(value.argmax(-1)[valid])
        elif name in per_token:
            labels.append(np.where(valid, value, -np.inf).argmax(-1))
        else:
            labels.append(value.argmax(-1))
    return np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)


def task_gate(reference_labels: np.ndarray, candidate_labels: np.ndarray, labels: np.ndarray | None = None,
              max_delta_points: float = 0.3, source: str = "") -> tuple[str, dict]:
    """Predicted labels (see `predicted_labels`): accuracy within `max_delta_points` of fp32 on a
    labelled set, or, with no labels, agreement with fp32's predictions (disagreement within the same
    points). Nothing to compare fails: a gate that judged nothing must not pass.

    Returns the check result ("ok" or what failed) and the figures for parity.json.
    """
    ref, cand = np.asarray(reference_labels), np.asarray(candidate_labels)
    if ref.size == 0 or ref.shape != cand.shape:
        return (f"no predictions to judge ({ref.size} from fp32, shape {cand.shape} from the tier)",
                {"examples": int(ref.size), "measured_on": f"nothing{source}"})
    agreement = float((ref == cand).mean())
    figures = {"examples": int(ref.size), "label_agreement": agreement, "max_delta_points": max_delta_points}
    if labels is None:
        figures["measured_on"] = f"golden inputs, predicted labels vs fp32 (no labelled eval set given){source}"
        delta = (1.0 - agreement) * 100
        figures["disagreement_points"] = delta
        what = f"predicted labels agree with fp32 on {agreement:.2%} of {ref.size} golden predictions"
    else:
        labels = np.asarray(labels)
        ref_acc, cand_acc = float((ref == labels).mean()), float((cand == labels).mean())
        delta = (ref_acc - cand_acc) * 100
        figures.update({"measured_on": f"labelled eval set{source}", "fp32_accuracy": ref_acc,
                        "accuracy": cand_acc, "accuracy_delta_points": -delta})
        what = f"accuracy {cand_acc:.2%} vs fp32 {ref_acc:.2%} on {ref.size} labelled examples"
    ok = abs(delta) <= max_delta_points
    return ("ok" if ok else f"{what}: {abs(delta):.2f} points > {max_delta_points}"), figures


def metric_gate(task: str, gated: tuple[str, ...], reference: dict[str, float], candidate: dict[str, float],
                limits: dict[str, float], examples: int, source: str = "") -> tuple[str, dict]:
    """Any task on its own eval set: each gated metric (in points) within `limits[metric]` of fp32's.

    Returns the check result ("ok" or what failed) and the figures for parity.json.
    """
    figures = {"measured_on": f"{task} eval set{source}", "examples": examples,
               "fp32": {m: reference[m] for m in gated}, "metrics": {m: candidate[m] for m in gated},
               "delta_points": {m: candidate[m] - reference[m] for m in gated},
               "max_delta_points": {m: limits[m] for m in gated}}
    failed = [f"{m} {candidate[m]:.2f} vs fp32 {reference[m]:.2f} on {examples} examples: "
              f"{abs(candidate[m] - reference[m]):.2f} points > {limits[m]}"
              for m in gated if not abs(candidate[m] - reference[m]) <= limits[m]]
    return ("ok" if not failed else "; ".join(failed)), figures
