"""Task outputs from a runtime's logits: labels, entities, answers, similarities. Numpy only.

Each decoder reproduces one transformers pipeline, rule for rule, so a label,
an entity or an answer is the same whichever runtime computed the logits and
equal to what transformers returns on the reference checkpoint (tested in
parity_tests/test_tasks.py):

- `classification`: `TextClassificationPipeline` (softmax, top label); a
  1-label head is a regression head, its score the raw logit
  (`function_to_apply="none"`).
- `token_entities`: `TokenClassificationPipeline` with `aggregation_strategy`
  "none", "simple" (kobert's default: the pipeline's own is "none", one row per
  token), "first", "average" or "max".
- `best_answer`: `QuestionAnsweringPipeline` of transformers 4.57 (5 removed
  it), `align_to_words=True` (its default) or False, see its docstring.

The `iter_*` drivers stream texts through `Runtime.stream_encoded`, so memory
stays flat in the number of texts; `Runtime.classify`, `.entities`, `.answer`
and `.similarity` are lists of what they yield.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from kobert.config import label_name

# What the QA pipeline writes over the logits of tokens that cannot be in an answer.
MASKED_LOGIT = -10000.0


def softmax(logits, axis: int = -1) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float32)
    shifted = np.exp(x - x.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def outside_prefix(label: str) -> tuple[str, str]:
    """("B" or "I", entity type) of a label; one without a B-/I- prefix counts as a continuation ("I")."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


# --- sequence classification -------------------------------------------------------------


def classification(logits, id2label: dict[int, str]) -> dict:
    """{"label", "score"} (softmax probability of the top label); {"score"} = the logit for a 1-label head."""
    logits = np.asarray(logits, dtype=np.float32).reshape(-1)
    if logits.size == 1:
        return {"score": float(logits[0])}
    scores = softmax(logits)
    best = int(scores.argmax())
    return {"label": label_name(id2label, best), "score": float(scores[best])}


# --- token classification: the pipeline's aggregation strategies ------------------------------

AGGREGATIONS = ("none", "simple", "first", "average", "max")


def _starts_word(text: str, start: int) -> bool:
    """The pipeline's rule for a tokenizer without a subword prefix (KoBERT's Unigram has none): a
    token starts a word at the text's start or when a space is just before or at its first character.
    (It does not read `word_ids()`: transformers uses those only for pre-split input.)"""
    return start == 0 or " " in text[start - 1:start + 1]


def token_entities(text: str, encoding, logits, id2label: dict[int, str], unk_id: int | None,
                   decode: Callable[[list[str]], str], ignore: tuple[str, ...] = ("O",),
                   aggregation: str = "simple") -> list[dict]:
    """Entities of one text from its per-token logits, grouped as the pipeline's `aggregation_strategy`.

    `encoding` is the text's tokenizer `Encoding` (ids, tokens, offsets,
    special_tokens_mask). Special tokens are skipped; an [UNK] token's `word` is
    the text it stands for. Then, as the pipeline:

    - "none": one {"entity", "score", "index", "word", "start", "end"} per token
      whose top label is not `ignore`d;
    - "simple": every token takes its top label;
    - "first" / "average" / "max": the tokens of a word (see `_starts_word`; an
      [UNK] token always starts one) take one label: the first token's, the top
      of their mean scores, or the label of the token with the highest score;
      a word's `word` is its decoded tokens.

    Then consecutive tokens (words) of the same type are one entity unless one
    starts a new one with "B-" ("O" groups too, then dropped as `ignore`d); an
    entity's score is the mean of its members', its `word` their decoded words
    (so "first" joins words without a space, as the pipeline does),
    `start`/`end` character offsets into `text`.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation {aggregation!r}: expected one of {', '.join(AGGREGATIONS)}")
    tokens = _scored_tokens(text, encoding, softmax(logits), unk_id)
    if aggregation in ("none", "simple"):
        members = [{"entity": label_name(id2label, int(t["scores"].argmax())), "score": float(t["scores"].max()),
                    "index": t["index"], "word": t["word"], "start": t["start"], "end": t["end"]} for t in tokens]
    else:
        members = [_word_entity(word, aggregation, id2label, decode) for word in _words(tokens)]
    if aggregation == "none":
        return [m for m in members if m["entity"] not in ignore]
    return _grouped_entities(members, ignore, decode)


def _scored_tokens(text: str, encoding, scores, unk_id: int | None) -> list[dict]:
    """The text's non-special tokens with their label scores, offsets and whether they start a word."""
    tokens = []
    for index, special in enumerate(encoding.special_tokens_mask):
        if special:
            continue
        start, end = encoding.offsets[index]
        unknown = encoding.ids[index] == unk_id
        # An [UNK] piece says nothing; the text it stands for does.
        tokens.append({"scores": scores[index], "index": index, "start": start, "end": end,
                       "word": text[start:end] if unknown else encoding.tokens[index],
                       "starts_word": unknown or _starts_word(text, start)})
    return tokens


def _words(tokens: list[dict]) -> list[list[dict]]:
    words: list[list[dict]] = []
    for token in tokens:
        if words and not token["starts_word"]:
            words[-1].append(token)
        else:
            words.append([token])
    return words


def _grouped_entities(members: list[dict], ignore: tuple[str, ...], decode) -> list[dict]:
    """Consecutive members of one type as one entity ("B-" starts a new one), the `ignore`d dropped."""
    groups: list[list[dict]] = []
    for member in members:
        prefix, kind = outside_prefix(member["entity"])
        if groups and prefix != "B" and kind == outside_prefix(groups[-1][-1]["entity"])[1]:
            groups[-1].append(member)
        else:
            groups.append([member])
    entities = []
    for group in groups:
        kind = group[0]["entity"].split("-", 1)[-1]
        if kind in ignore:
            continue
        entities.append({"entity_group": kind, "score": float(np.mean([m["score"] for m in group])),
                         "word": decode([m["word"] for m in group]),
                         "start": group[0]["start"], "end": group[-1]["end"]})
    return entities


def _word_entity(tokens: list[dict], aggregation: str, id2label: dict[int, str], decode) -> dict:
    """One word's label and score from its tokens' scores, as the pipeline's `aggregate_word`."""
    if aggregation == "first":
        scores = tokens[0]["scores"]
    elif aggregation == "max":
        scores = max(tokens, key=lambda t: t["scores"].max())["scores"]
    else:  # average
        scores = np.nanmean(np.stack([t["scores"] for t in tokens]), axis=0)
    best = int(scores.argmax())
    return {"entity": label_name(id2label, best), "score": float(scores[best]),
            "word": decode([t["word"] for t in tokens]), "start": tokens[0]["start"], "end": tokens[-1]["end"]}


# --- question answering -----------------------------------------------------------------


def window_spans(encoding, start_logits, end_logits, cls_id: int | None, max_answer_len: int,
                 top_k: int = 1) -> list[tuple[int, int, float]]:
    """(start token, end token, score) of a window's `top_k` best spans, best first, those inside the
    context kept (so maybe none).

    As the pipeline: tokens outside the context (question, [SEP]) get MASKED_LOGIT,
    [CLS] stays in the softmax but is then zeroed; the span score is
    p(start) * p(end) over spans with start <= end < start + max_answer_len; the
    `top_k` are picked with the pipeline's own numpy calls, so ties fall the same way.
    """
    ids = np.asarray(encoding.ids)
    allowed = np.array([s == 1 for s in encoding.sequence_ids]) | (ids == cls_id)
    start = _masked_probabilities(start_logits, allowed)
    end = _masked_probabilities(end_logits, allowed)
    start[0] = end[0] = 0.0
    candidates = np.tril(np.triu(np.outer(start, end)), max_answer_len - 1)
    flat = candidates.flatten()
    if top_k == 1:
        order = [int(np.argmax(flat))]
    elif len(flat) < top_k:
        order = np.argsort(-flat)
    else:
        best = np.argpartition(-flat, top_k)[0:top_k]
        order = best[np.argsort(-flat[best])]
    firsts, lasts = np.unravel_index(order, candidates.shape)
    return [(int(a), int(b), float(candidates[a, b])) for a, b in zip(firsts, lasts) if allowed[a] and allowed[b]]


def _masked_probabilities(logits, allowed: np.ndarray) -> np.ndarray:
    x = np.where(allowed, np.asarray(logits, dtype=np.float32), np.float32(MASKED_LOGIT)).astype(np.float32)
    x = np.exp(x - x.max())
    return x / x.sum()


def span_characters(encoding, first: int, last: int, align_to_words: bool) -> tuple[int, int]:
    """Character offsets of tokens first..last in the context: the tokens' own, or (align_to_words)
    those of the whitespace words they are in, as the pipeline's `get_indices`."""
    if align_to_words:
        try:
            start = encoding.word_to_chars(encoding.token_to_word(first), sequence_index=1)[0]
            end = encoding.word_to_chars(encoding.token_to_word(last), sequence_index=1)[1]
            return start, end
        except Exception:  # as the pipeline: a token in no word ([CLS]) keeps its own offsets
            pass
    return encoding.offsets[first][0], encoding.offsets[last][1]


def best_answer(context: str, windows: list[tuple[object, np.ndarray, np.ndarray]], cls_id: int | None,
                max_answer_len: int, align_to_words: bool = True) -> dict:
    """{"answer", "score", "start", "end"} over all windows of one context.

    Each window proposes its best span (with `align_to_words`, its 12 best, as the
    pipeline: widening to words can make several spans one answer); spans of the same
    text (case-insensitive) add their scores; the highest score wins (the first one
    on a tie). Offsets are the span's tokens' (`align_to_words=False`) or those of
    the whole whitespace words they touch (True, the pipeline's default), which
    in Korean keeps a particle in the answer: "세종대왕이", not "세종대왕".
    """
    top_k = 1 * 2 + 10 if align_to_words else 1  # the pipeline's candidates per window for one answer
    answers: list[dict] = []
    for encoding, start_logits, end_logits in windows:
        for first, last, score in window_spans(encoding, start_logits, end_logits, cls_id, max_answer_len, top_k):
            start, end = span_characters(encoding, first, last, align_to_words)
            text = context[start:end]
            same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
            if same is not None:
                same["score"] += score
            else:
                answers.append({"answer": text, "score": score, "start": start, "end": end})
    if not answers:  # no window had a span inside the context (an empty context)
        return {"answer": "", "score": 0.0, "start": 0, "end": 0}
    return sorted(answers, key=lambda a: a["score"], reverse=True)[0]


# --- sentence similarity -----------------------------------------------------------------


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (n, hidden) arrays."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
    return (a * b).sum(axis=-1) / norms


# --- gold data to token targets (fine-tuning and evaluation) -------------------------------------


def token_tags(text: str, encoding, spans: list[tuple[int, int, str]]) -> list[str | None]:
    """BIO tag per token of `encoding` (None for special tokens) from character spans (start, end, type).

    A token belongs to the first span its characters (leading spaces aside: a
    "▁" piece's offsets cover the space before it) overlap; the first token of a
    span is B-, the others I-. So an entity that starts or ends inside a token
    (a particle glued to a name: "홍길동이") is tagged on the tokens it touches.
    """
    tags: list[str | None] = []
    seen: set[int] = set()
    for index, special in enumerate(encoding.special_tokens_mask):
        if special:
            tags.append(None)
            continue
        start, end = encoding.offsets[index]
        start += len(text[start:end]) - len(text[start:end].lstrip())
        owner = next((k for k, (a, b, _) in enumerate(spans) if start < b and end > a and start < end), None)
        if owner is None:
            tags.append("O")
            continue
        tags.append(("I-" if owner in seen else "B-") + spans[owner][2])
        seen.add(owner)
    return tags


def answer_tokens(encoding, start: int, end: int) -> tuple[int, int]:
    """(first, last) token of the answer characters [start, end) in a QA window, or (0, 0) ([CLS])
    when the window's context does not hold the whole answer."""
    context = [i for i, s in enumerate(encoding.sequence_ids) if s == 1]
    if not context or start < encoding.offsets[context[0]][0] or end > encoding.offsets[context[-1]][1]:
        return 0, 0
    first = next(i for i in context if encoding.offsets[i][1] > start)
    last = next(i for i in reversed(context) if encoding.offsets[i][0] < end)
    return (first, last) if first <= last else (0, 0)


# --- streaming drivers over a runtime -------------------------------------------------------


def _require_head(runtime, head: str, what: str) -> None:
    if runtime.config.head != head:
        raise ValueError(f"{runtime.export_dir}: {what} needs a {head} head; this model has "
                         f"{runtime.config.head!r}")


def paired(first: Iterable, second: Iterable, names: tuple[str, str]) -> Iterator[tuple]:
    """zip, but a length mismatch is one clear error instead of silently dropped rows."""
    missing = object()
    for number, (a, b) in enumerate(itertools.zip_longest(first, second, fillvalue=missing)):
        if a is missing or b is missing:
            raise ValueError(f"{names[0]} and {names[1]} differ in number (one of them ends after {number})")
        yield a, b


def iter_labels(runtime, texts: Iterable[str], pairs: Iterable[str] | None = None,
                batch_size: int = 32) -> Iterator[tuple[object, dict]]:
    """(text or (text, pair), its label) in input order."""
    _require_head(runtime, "sequence_classification", "classify")
    encoder = runtime.text_encoder
    rows = texts if pairs is None else paired(texts, pairs, ("texts", "pairs"))

    def encode(window):
        if pairs is None:
            return [[e] for e in encoder.encodings(window, offsets=False)]
        return [[e] for e in encoder.encodings([a for a, _ in window], [b for _, b in window], offsets=False)]

    for row, [(_, outputs)] in runtime.stream_encoded(rows, encode, batch_size, keep=("logits",)):
        yield row, classification(outputs["logits"], runtime.config.id2label)


def iter_entities(runtime, texts: Iterable[str], batch_size: int = 32,
                  aggregation: str = "simple") -> Iterator[tuple[str, list[dict]]]:
    """(text, its entities) in input order, grouped as `token_entities` with `aggregation`."""
    _require_head(runtime, "token_classification", "entities")
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation {aggregation!r}: expected one of {', '.join(AGGREGATIONS)}")
    encoder = runtime.text_encoder

    def encode(window):
        return [[e] for e in encoder.encodings(window)]

    for text, [(encoding, outputs)] in runtime.stream_encoded(texts, encode, batch_size, keep=("logits",)):
        yield text, token_entities(text, encoding, outputs["logits"], runtime.config.id2label, encoder.unk_id,
                                   encoder.decode_tokens, aggregation=aggregation)


def iter_answers(runtime, rows: Iterable[tuple[str, str]], doc_stride: int = 128, max_answer_len: int = 30,
                 max_seq_len: int = 384, batch_size: int = 32,
                 align_to_words: bool = True) -> Iterator[tuple[tuple[str, str], dict]]:
    """((question, context), its answer) in input order. `max_seq_len` is cut to the model's length and
    `doc_stride` to half of that, as the pipeline's defaults are; `align_to_words` as `best_answer`."""
    _require_head(runtime, "question_answering", "answer")
    if max_answer_len < 1:
        raise ValueError(f"max_answer_len must be >= 1, got {max_answer_len}")
    encoder = runtime.text_encoder
    max_seq_len = min(max_seq_len, encoder.max_length)
    doc_stride = min(doc_stride, max_seq_len // 2)

    def encode(window):
        return encoder.windows([q for q, _ in window], [c for _, c in window], max_seq_len, doc_stride)

    for row, windows in runtime.stream_encoded(rows, encode, batch_size, keep=("start_logits", "end_logits")):
        yield row, best_answer(row[1], [(e, out["start_logits"], out["end_logits"]) for e, out in windows],
                               encoder.cls_id, max_answer_len, align_to_words)


def iter_similarities(runtime, a: Iterable[str], b: Iterable[str], pooling: str = "mean",
                      batch_size: int = 32) -> Iterator[float]:
    from kobert.encoding import windows

    for window in windows(paired(a, b, ("first texts", "second texts")), batch_size * 8):
        first = runtime.embed([x for x, _ in window], pooling=pooling, batch_size=batch_size)
        second = runtime.embed([y for _, y in window], pooling=pooling, batch_size=batch_size)
        yield from (float(v) for v in cosine(first, second))
