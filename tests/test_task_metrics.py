"""Task metrics and data readers against independent references: seqeval (strict IOB2 entity F1),
scipy (Spearman), scikit-learn (macro-F1), KorQuAD's official rules (worked cases), and the shared
data files themselves (counts from shared/data/MANIFEST.md)."""

from __future__ import annotations

import numpy as np
import pytest

from kobert import metrics


def random_tags(rng, n: int) -> list[str]:
    return [str(t) for t in rng.choice(["O", "O", "B-PS", "I-PS", "B-LC", "I-LC", "I-OG"], size=n)]


def test_strict_entities_follow_iob2():
    tags = ["B-PS", "I-PS", "O", "I-LC", "B-LC", "B-LC", "I-OG", "B-DT", "I-DT", "I-DT"]
    assert metrics.strict_entities(tags) == {(0, 2, "PS"), (4, 5, "LC"), (5, 6, "LC"), (7, 10, "DT")}


def test_entity_f1_equals_seqeval_strict():
    seqeval = pytest.importorskip("seqeval.metrics")
    from seqeval.scheme import IOB2

    rng = np.random.default_rng(0)
    gold = [random_tags(rng, int(rng.integers(1, 30))) for _ in range(300)]
    predicted = [[t if rng.random() < 0.7 else str(rng.choice(["O", "B-PS", "I-PS", "B-LC", "I-OG"])) for t in row]
                 for row in gold]
    ours = metrics.entity_f1(predicted, gold)
    assert ours["f1"] == pytest.approx(seqeval.f1_score(gold, predicted, mode="strict", scheme=IOB2), abs=1e-12)
    assert ours["precision"] == pytest.approx(seqeval.precision_score(gold, predicted, mode="strict", scheme=IOB2))
    assert ours["recall"] == pytest.approx(seqeval.recall_score(gold, predicted, mode="strict", scheme=IOB2))


def test_spearman_equals_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 11, size=500) / 2  # KorSTS-like scores in steps of 0.5: many ties
    predicted = gold + rng.normal(0, 1.5, size=500)
    predicted[:50] = np.round(predicted[:50])
    assert metrics.spearman(predicted, gold) == pytest.approx(stats.spearmanr(predicted, gold).statistic, abs=1e-12)


def test_macro_f1_equals_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    gold = rng.integers(0, 7, size=1000)
    predicted = np.where(rng.random(1000) < 0.6, gold, rng.integers(0, 6, size=1000))  # label 6 never predicted
    assert metrics.macro_f1(predicted, gold, 7) == pytest.approx(
        sklearn_metrics.f1_score(gold, predicted, average="macro"), abs=1e-12)


def test_korquad_normalisation_and_character_f1():
    assert metrics.normalize_answer("《토지》 (1969)") == "토지 1969"
    assert metrics.exact_match("‘홍길동’", "홍길동") == 1.0
    assert metrics.exact_match("홍길동이", "홍길동") == 0.0
    # characters, not words: "1989년 2월" vs "1989년 2월 15일" share 1,9,8,9,년,2,월 (7 of 7 and 7 of 10)
    assert metrics.character_f1("1989년 2월", "1989년 2월 15일") == pytest.approx(2 * 1.0 * 0.7 / 1.7)
    scores = metrics.korquad_scores(["홍길동", "서울"], [["홍 길동", "홍길동"], ["부산"]])
    assert scores == {"exact_match": 50.0, "f1": 50.0}


# --- readers and token targets ---------------------------------------------------------------


def test_token_tags_project_character_spans(tmp_path):
    from kobert.checkpoint import shipped
    from kobert.encoding import TextEncoder
    from kobert.tasks import token_tags

    encoder = TextEncoder(shipped("tokenizer"), 128)
    text = "어제 홍길동이  서울에 갔다"
    encoding = encoder.encodings([text])[0]
    tags = token_tags(text, encoding, [(3, 6, "PS"), (9, 11, "LC")])  # 홍길동, 서울
    assert list(zip(encoding.tokens, tags)) == [
        ("[CLS]", None), ("▁어", "O"), ("제", "O"), ("▁홍", "B-PS"), ("길", "I-PS"), ("동", "I-PS"), ("이", "O"),
        ("▁서울", "B-LC"), ("에", "O"), ("▁", "O"), ("갔다", "O"), ("[SEP]", None)]


def test_answer_tokens_find_the_answer_in_its_window():
    from kobert.checkpoint import shipped
    from kobert.encoding import TextEncoder
    from kobert.tasks import answer_tokens

    encoder = TextEncoder(shipped("tokenizer"), 128)
    context = "임종석은 1989년 2월 15일 여의도 농민 폭력 시위를 주도한 혐의로 지명수배되었다. " * 3
    answer = "1989년 2월 15일"
    start = context.index(answer)
    windows = encoder.windows(["임종석이 지명수배된 날은?"], [context], 24, 8)[0]
    assert len(windows) > 3
    found = [(w, answer_tokens(w, start, start + len(answer))) for w in windows]
    inside = [(w, span) for w, span in found if span != (0, 0)]
    assert inside, "no window holds the answer"
    for w, (first, last) in inside:
        assert context[w.offsets[first][0]:w.offsets[last][1]].strip() == answer


@pytest.mark.shared_data
def test_the_shared_task_files_read_as_the_manifest_counts():
    from kobert.datasets import NER_TYPES, YNAT_LABELS, default_data_dir, read_task, split_by_article

    if not (default_data_dir() / "MANIFEST.md").is_file():
        pytest.skip(f"{default_data_dir()}: shared data not available")
    ynat_dev, ynat_train = read_task("ynat", "eval"), read_task("ynat", "train")
    assert (len(ynat_dev), len(ynat_train)) == (9107, 45678)  # dev has no header, train has one
    assert set(ynat_dev.labels) == set(range(len(YNAT_LABELS)))
    assert any("\t" in t for t in ynat_train.texts), "the quoted title with a TAB"
    ner = read_task("ner", "eval")
    assert len(ner) == 366 and {kind for s in ner for _, _, kind in s.spans} == set(NER_TYPES)
    assert all(s.text[a:b] for s in ner for a, b, _ in s.spans)
    sts = read_task("sts", "eval")
    assert len(sts) == 1379 and min(sts.scores) >= 0 and max(sts.scores) <= 5
    train, held_out = read_task("qa", "train"), read_task("qa", "eval")
    assert len(train) + len(held_out) == 5774
    assert not {e.article for e in train} & {e.article for e in held_out}
    assert round(len({e.article for e in train}) / 140, 1) == 0.8
    assert all(e.context[s:s + len(t)] == t for e in held_out for t, s in e.answers)
