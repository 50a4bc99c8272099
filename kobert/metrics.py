"""Task metrics, in plain Python and numpy: accuracy, macro-F1, strict entity F1, Spearman, KorQuAD EM/F1.

Each follows the reference implementation its benchmark reports with (named in
its docstring) and is tested against hand-worked cases in tests/test_task_metrics.py.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np


def accuracy(predicted: Sequence[int], gold: Sequence[int]) -> float:
    predicted, gold = np.asarray(predicted), np.asarray(gold)
    return float((predicted == gold).mean()) if gold.size else 0.0


def macro_f1(predicted: Sequence[int], gold: Sequence[int], num_labels: int) -> float:
    """Unweighted mean of per-label F1 over the labels present in gold or predictions
    (scikit-learn's f1_score(average="macro") on the labels that occur; KLUE YNAT's metric)."""
    predicted, gold = np.asarray(predicted), np.asarray(gold)
    scores = []
    for label in range(num_labels):
        true_positive = int(((predicted == label) & (gold == label)).sum())
        predicted_count, gold_count = int((predicted == label).sum()), int((gold == label).sum())
        if predicted_count == 0 and gold_count == 0:
            continue
        scores.append(2 * true_positive / (predicted_count + gold_count))
    return float(np.mean(scores)) if scores else 0.0


# --- named entities: seqeval's strict mode (IOB2) ----------------------------------------------


def strict_entities(tags: Sequence[str]) -> set[tuple[int, int, str]]:
    """(first token, last token + 1, type) of every well-formed entity: B-X followed by I-X tokens.

    As seqeval's `mode="strict", scheme=IOB2`: an I-X that does not continue a B-X or
    I-X of the same type starts nothing, and "O" (or any other tag) ends an entity.
    """
    found, start, kind = set(), None, None
    for index, tag in enumerate(list(tags) + ["O"]):
        prefix, _, this_kind = tag.partition("-")
        if start is not None and not (prefix == "I" and this_kind == kind):
            found.add((start, index, kind))
            start = kind = None
        if prefix == "B":
            start, kind = index, this_kind
    return found


def entity_f1(predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro precision, recall and F1 of exact entity matches (span and type) over all sentences."""
    true_positive = predicted_count = gold_count = 0
    for predicted_tags, gold_tags in zip(predicted, gold, strict=True):
        p, g = strict_entities(predicted_tags), strict_entities(gold_tags)
        true_positive += len(p & g)
        predicted_count += len(p)
        gold_count += len(g)
    precision = true_positive / predicted_count if predicted_count else 0.0
    recall = true_positive / gold_count if gold_count else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


# --- sentence similarity ---------------------------------------------------------------------


def ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (as scipy.stats.rankdata)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    result = np.empty(len(values), dtype=np.float64)
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        result[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson of the tie-averaged ranks, as scipy.stats.spearmanr)."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denominator) if denominator else 0.0


# --- KorQuAD 1.0: the official evaluate-v1.0.py rules ------------------------------------------

# evaluate-v1.0.py turns these into spaces before dropping ASCII punctuation.
_KORQUAD_SYMBOLS = re.compile("['\"《》<>〈〉()‘’]")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """KorQuAD's normalisation: listed quotes and brackets to spaces, lower case, ASCII punctuation
    removed, whitespace runs collapsed."""
    text = _KORQUAD_SYMBOLS.sub(" ", text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    return " ".join(text.split())


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def character_f1(prediction: str, truth: str) -> float:
    """KorQuAD's F1: over characters (spaces excluded) of the normalised strings, not over words."""
    predicted = list("".join(normalize_answer(prediction).split()))
    wanted = list("".join(normalize_answer(truth).split()))
    same = sum((Counter(predicted) & Counter(wanted)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(wanted)
    return 2 * precision * recall / (precision + recall)


def korquad_scores(predictions: Sequence[str], truths: Sequence[Sequence[str]]) -> dict[str, float]:
    """EM and F1 (x 100), each the best over a question's gold answers, averaged over questions."""
    em = [max(exact_match(p, t) for t in answers) for p, answers in zip(predictions, truths, strict=True)]
    f1 = [max(character_f1(p, t) for t in answers) for p, answers in zip(predictions, truths, strict=True)]
    return {"exact_match": 100 * float(np.mean(em)) if em else 0.0, "f1": 100 * float(np.mean(f1)) if f1 else 0.0}
