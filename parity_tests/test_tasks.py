"""Task outputs through every fp32 runtime equal transformers' pipelines.

Three checkpoints of a shape no other test uses (3 layers, hidden 60 in 5 heads,
FFN 72), random weights with the head scaled so its decisions vary from token to
token: a token classifier with B-/I- labels (many entities, several tokens long,
adjacent ones split by B-), a QA head (answers found in later windows of long
contexts) and a 3-label sequence classifier with Korean label names. Each is
exported to every fp32 target in the registry; `entities`, `answer`, `classify`
and `similarity` of every runtime are compared with transformers on the export's
own `reference/` checkpoint:

- token and sequence classification: transformers 5 pipelines (this venv), entities
  with every `aggregation_strategy` ("none", "simple", "first", "average", "max");
- question answering: transformers 4.57's pipeline (5 removed it), run in the
  `.venv-hf4` venv in a subprocess (ci/setup.sh creates it; skipped without it),
  with its default `align_to_words=True` (answers widened to whitespace words, also
  what `kobert run --output answer` prints) and with False.

Same labels, spans, words and offsets; scores within 1e-4.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file

from kobert import registry, runtimes
from kobert.checkpoint import init_checkpoint, shipped
from kobert.config import KoBertConfig
from kobert.export import export

REPO_ROOT = Path(__file__).resolve().parents[1]
HF4_PYTHON = Path(os.environ.get("KOBERT_HF4_PYTHON") or REPO_ROOT / ".venv-hf4" / "bin" / "python")
FP32_RUNS = [(t.runtime, name) for name, t in registry.TARGETS.items() if t.gate == "fp32"] + [("torch", None)]
RUN_IDS = [artifact or runtime for runtime, artifact in FP32_RUNS]
FP32_ARTIFACTS = [artifact for _, artifact in FP32_RUNS if artifact]
SCORE_TOLERANCE = 1e-4
SHAPE = dict(hidden_size=60, num_hidden_layers=3, num_attention_heads=5, intermediate_size=72)
ENTITY_LABELS = ["O", "B-PS", "I-PS", "B-LC", "I-LC", "B-OG", "I-OG", "B-DT", "I-DT", "B-TI", "I-TI"]
SENTIMENT_LABELS = ["부정", "중립", "긍정"]

TEXTS = [
    "홍길동이 서울에서 삼성전자 본사를 방문했다.",
    "2019년 3월 1일 오전 9시,   부산  해운대에서   행사가 열렸다.",  # runs of spaces
    "이 영화 정말 재밌어요 ㅋㅋㅋ 😀👍 강추!!",  # jamo, emoji
    "KoBERT는 SKTBrain이 공개한 BERT 모델입니다 (Apache-2.0).",  # latin, digits, brackets
    "  앞뒤에 공백이 있는 문장  ",
    "䷀ 괜찮아 ꙮ 쀍쀎 뷁 𝕂𝕠𝔹𝔼ℝ𝕋",  # [UNK] pieces (word = the text they stand for), math letters
    "김철수",
    "ㅋ",
]
PAIRS = ["서울에 갔다.", "재미없어요", "모델을 공개했다", "공백", "뭐라고?", "김영희", "ㅎㅎ", "한국어 문장"]

SENTENCES = [
    "임종석은 1989년 2월 15일 여의도 농민 폭력 시위를 주도한 혐의로 지명수배되었다.",
    "같은 해 6월 30일 평양축전에 임수경을 대표로 파견하여 국가보안법 위반 혐의가 추가되었다.",
    "경찰은 12월 18일부터 20일 사이 서울 경희대학교에서 성명 발표를 추진하고 있다는 첩보를 입수했다.",
    "1999년 서울 송파구 잠실동에서 열린 행사에는 약 3,000명의 시민이 참석했다.",
    "KoBERT는 한국어 위키백과와 뉴스 문장으로 사전학습된 BERT 모델이다.",
    "부산 해운대 해수욕장은 여름마다 수십만 명의 피서객으로 붐빈다.",
    "조선 세종 때 훈민정음이 창제되었고 1446년 반포되었다.",
    "삼성전자는 경기도 수원시에 본사를 두고 있으며 반도체와 스마트폰을 만든다.",
]
# Long enough for several windows at the default 384 tokens, and many at 96.
LONG_CONTEXT = " ".join(SENTENCES * 4)
QA_ROWS = [
    ("임종석이 지명수배된 날은?", LONG_CONTEXT),
    ("훈민정음은 언제 반포되었나?", " ".join(reversed(SENTENCES * 3))),
    ("행사에 몇 명이 참석했나?", SENTENCES[3]),
    ("누가  서울에   갔나? 😀", "홍길동이  서울에   갔다 😀 BERT 모델 ABC ䷀"),
    ("KoBERT는 무엇인가", SENTENCES[4] + "  " + SENTENCES[5]),
]
QA_OPTIONS = [dict(doc_stride=32, max_seq_len=96, max_answer_len=15),
              dict(doc_stride=128, max_seq_len=384, max_answer_len=30)]
ALIGNMENTS = (True, False)  # True: the pipeline's default, asked for by leaving the option out
AGGREGATIONS = ("none", "simple", "first", "average", "max")


def head_checkpoint(config: KoBertConfig, out: Path, seed: int, head_weight: str, head_bias: str,
                    scale: float, bias=None) -> Path:
    """A random checkpoint whose head weight is scaled up, so its top label changes from token to token."""
    checkpoint = init_checkpoint(config, out, seed=seed)
    state = load_file(str(checkpoint / "model.safetensors"))
    state[head_weight] = (state[head_weight] * scale).astype(np.float32)
    if bias is not None:
        state[head_bias] = np.asarray(bias, dtype=np.float32)
    save_file(state, str(checkpoint / "model.safetensors"), metadata={"format": "pt"})
    return checkpoint


def export_everywhere(checkpoint: Path, out: Path, targets: list[str]) -> Path:
    result = export(checkpoint, out, tokenizer=shipped("tokenizer"), targets=targets)
    assert result.report.passed, result.report.table()
    return result.out


def transformers_tokenizer(export_dir: Path):
    return transformers.AutoTokenizer.from_pretrained(str(export_dir / "tokenizer"))


def plain(value):
    """numpy scalars in pipeline outputs -> Python numbers."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def assert_same(got: dict, want: dict, keys: tuple[str, ...], where: str) -> None:
    assert {k: got[k] for k in keys} == {k: want[k] for k in keys}, f"{where}: {got} != {want}"
    assert set(got) == set(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
    assert abs(got["score"] - want["score"]) <= SCORE_TOLERANCE, f"{where}: score {got['score']} vs {want['score']}"


# --- token classification ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ner_export(tmp_path_factory, request, artifacts_to_build) -> Path:
    root = tmp_path_factory.mktemp("ner")
    config = KoBertConfig(**SHAPE, head="token_classification", num_labels=len(ENTITY_LABELS),
                          id2label=dict(enumerate(ENTITY_LABELS)))
    # "O" and the I- labels favoured a little, so entities run over several tokens and "O" separates them.
    bias = [1.5] + [0.0 if label.startswith("B-") else 1.0 for label in ENTITY_LABELS[1:]]
    checkpoint = head_checkpoint(config, root / "ck", 31, "classifier.weight", "classifier.bias", 40.0, bias)
    return export_everywhere(checkpoint, root / "export", artifacts_to_build(request, FP32_ARTIFACTS))


@pytest.fixture(scope="module")
def ner_references(ner_export) -> dict[str, list[list[dict]]]:
    """aggregation strategy -> the pipeline's entities per text."""
    import warnings

    model = transformers.AutoModelForTokenClassification.from_pretrained(str(ner_export / "reference"))
    tokenizer = transformers_tokenizer(ner_export)
    found = {}
    for aggregation in AGGREGATIONS:
        pipe = transformers.pipeline("token-classification", model=model, tokenizer=tokenizer,
                                     aggregation_strategy=aggregation, device="cpu")
        with warnings.catch_warnings():  # "Tokenizer does not support real words, using fallback heuristic"
            warnings.simplefilter("ignore", UserWarning)
            found[aggregation] = plain(pipe(TEXTS + [LONG_CONTEXT * 3]))  # the last is cut at 512 tokens
    return found


@pytest.fixture(scope="module")
def ner_reference(ner_references) -> list[list[dict]]:
    return ner_references["simple"]


def test_the_token_classifier_exercises_every_grouping_rule(ner_reference, ner_references):
    entities = [e for row in ner_reference for e in row]
    assert len(entities) > 30
    assert {e["entity_group"] for e in entities} == {"PS", "LC", "OG", "DT", "TI"}
    assert any(" " in e["word"].strip() or len(e["word"]) > 3 for e in entities), "no multi-token entity"
    adjacent_same_type = any(a["end"] == b["start"] and a["entity_group"] == b["entity_group"]
                             for row in ner_reference for a, b in zip(row, row[1:]))
    assert adjacent_same_type, "no entity split from its neighbour by a B- label"
    assert any(word in e["word"] for e in ner_reference[5] for word in ("䷀", "ꙮ", "쀍", "뷁")), "no [UNK] word"
    # Word strategies group tokens into words first: they must find other entities than "simple".
    for aggregation in ("first", "average", "max"):
        assert ner_references[aggregation] != ner_reference, f"{aggregation} found what simple found"
    assert len({json.dumps(ner_references[a]) for a in ("first", "average", "max")}) == 3


@pytest.mark.parametrize("runtime,artifact", FP32_RUNS, ids=RUN_IDS)
def test_entities_equal_the_token_classification_pipeline(ner_export, ner_references, runtime, artifact):
    with runtimes.load(ner_export, runtime=runtime, artifact=artifact) as rt:
        for aggregation, reference in ner_references.items():
            got = rt.entities(TEXTS + [LONG_CONTEXT * 3], batch_size=3, aggregation=aggregation)
            assert len(got) == len(reference)
            keys = ("entity", "index", "word", "start", "end") if aggregation == "none" else \
                ("entity_group", "word", "start", "end")
            for number, (row, want_row) in enumerate(zip(got, reference)):
                where = f"{artifact or runtime} {aggregation} text {number}"
                assert len(row) == len(want_row), f"{where}: {len(row)} entities, the pipeline found {len(want_row)}"
                for entity, want in zip(row, want_row):
                    assert_same(entity, want, keys, where)


# --- question answering --------------------------------------------------------------------


@pytest.fixture(scope="module")
def qa_export(tmp_path_factory, request, artifacts_to_build) -> Path:
    root = tmp_path_factory.mktemp("qa")
    config = KoBertConfig(**SHAPE, head="question_answering", num_labels=2)
    checkpoint = head_checkpoint(config, root / "ck", 32, "qa_outputs.weight", "qa_outputs.bias", 40.0)
    return export_everywhere(checkpoint, root / "export", artifacts_to_build(request, FP32_ARTIFACTS))


def transformers_4_tokenizer_dir(export_dir: Path, into: Path) -> Path:
    """The export's tokenizer as transformers 4 reads it: TokenizersBackend is a transformers-5 class name."""
    into = into / "tokenizer-hf4"
    shutil.copytree(export_dir / "tokenizer", into)
    config_file = into / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return into


@pytest.fixture(scope="module")
def qa_references(qa_export, tmp_path_factory) -> dict[bool, list[list[dict]]]:
    """align_to_words -> the pipeline's answers, per QA_OPTIONS, per row."""
    if not HF4_PYTHON.is_file():
        pytest.skip(f"{HF4_PYTHON}: no transformers 4.57 venv (ci/setup.sh creates .venv-hf4)")
    tokenizer = transformers_4_tokenizer_dir(qa_export, tmp_path_factory.mktemp("hf4"))
    jobs = [{"rows": QA_ROWS, "options": options if align else {**options, "align_to_words": False}}
            for align in ALIGNMENTS for options in QA_OPTIONS]
    request = {"model": str(qa_export / "reference"), "tokenizer": str(tokenizer), "jobs": jobs}
    clean_env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "HF_HUB_OFFLINE": "1",
                 "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([str(HF4_PYTHON), str(Path(__file__).with_name("hf4_question_answering.py"))],
                          input=json.dumps(request, ensure_ascii=False), capture_output=True, text=True,
                          env=clean_env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    reply = json.loads(done.stdout)
    assert reply["transformers"].startswith("4.57."), reply["transformers"]
    answers = iter(reply["answers"])
    return {align: [next(answers) for _ in QA_OPTIONS] for align in ALIGNMENTS}


@pytest.fixture(scope="module")
def qa_reference(qa_references) -> list[list[dict]]:
    return qa_references[True]


def test_the_qa_head_answers_from_later_windows(qa_references):
    first_window_chars = 96 * 1.5  # far fewer characters than a 96-token window's context holds
    for answers in qa_references.values():
        assert any(a["start"] > first_window_chars for a in answers[0]), "every answer is in the first window"
        assert all(a["answer"] for rows in answers for a in rows)


def test_word_alignment_answers_whole_words(qa_references):
    """The tokenizer has words: aligned answers are whole whitespace words, and not the whole context."""
    contexts = [c for _, c in QA_ROWS]
    widened = 0
    for options, words, tokens in zip(QA_OPTIONS, qa_references[True], qa_references[False]):
        for number, (word, token) in enumerate(zip(words, tokens)):
            context, start, end = contexts[number], word["start"], word["end"]
            assert start == 0 or context[start].isspace() or context[start - 1].isspace(), word
            assert end == len(context) or context[end].isspace(), word
            # A span of at most max_answer_len tokens touches at most that many words (one word per
            # context, as with Metaspace split=False, answered with the whole window).
            assert len(word["answer"].split()) <= options["max_answer_len"], word
            widened += word["answer"] != token["answer"]
    assert widened, "no answer changed with align_to_words: the test would not tell the options apart"


@pytest.mark.parametrize("runtime,artifact", FP32_RUNS, ids=RUN_IDS)
def test_answers_equal_the_question_answering_pipeline(qa_export, qa_references, runtime, artifact):
    questions, contexts = [q for q, _ in QA_ROWS], [c for _, c in QA_ROWS]
    with runtimes.load(qa_export, runtime=runtime, artifact=artifact) as rt:
        for align, reference in qa_references.items():
            for options, want_answers in zip(QA_OPTIONS, reference):
                # The default is the pipeline's: align_to_words=True is asked for by leaving it out.
                alignment = {} if align else {"align_to_words": False}
                got = rt.answer(questions, contexts, batch_size=4, **options, **alignment)
                for number, (answer, want) in enumerate(zip(got, want_answers, strict=True)):
                    where = f"{artifact or runtime} {options} align_to_words={align} question {number}"
                    assert_same(answer, want, ("answer", "start", "end"), where)
                    assert answer["answer"] == contexts[number][answer["start"]:answer["end"]]


# --- sequence classification and similarity ---------------------------------------------------


def spread_classifier(checkpoint: Path, texts: list[str], pairs: list[str], spread: float = 2.0,
                      sharpen: float = 5.0) -> None:
    """Rescale a sequence classifier so its logits on these inputs are centred with std `spread`.

    A random model's pooled vectors barely differ between texts (weights of std
    0.02 attend almost uniformly, so [CLS] hardly depends on the text) and a random
    head gives every text the same label: the encoder's matrices are scaled up
    first (`sharpen`), then the head spreads what differences there are.
    """
    state = load_file(str(checkpoint / "model.safetensors"))
    state = {k: v * sharpen if k.startswith("bert.encoder.") and v.ndim == 2 else v for k, v in state.items()}
    save_file(state, str(checkpoint / "model.safetensors"), metadata={"format": "pt"})
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(shipped("tokenizer")))
    encoder = transformers.AutoModel.from_pretrained(str(checkpoint), attn_implementation="eager")
    singles = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    both = tokenizer(texts, pairs, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        pooled = np.concatenate([encoder(**singles).pooler_output.numpy(), encoder(**both).pooler_output.numpy()])
    state = load_file(str(checkpoint / "model.safetensors"))
    weight = state["classifier.weight"].astype(np.float64)
    projected = pooled @ weight.T
    scale = spread / projected.std(axis=0)
    state["classifier.weight"] = (weight * scale[:, None]).astype(np.float32)
    state["classifier.bias"] = (-projected.mean(axis=0) * scale).astype(np.float32)
    save_file(state, str(checkpoint / "model.safetensors"), metadata={"format": "pt"})


@pytest.fixture(scope="module")
def classifier_export(tmp_path_factory, request, artifacts_to_build) -> Path:
    root = tmp_path_factory.mktemp("cls")
    config = KoBertConfig(**SHAPE, head="sequence_classification", num_labels=3,
                          id2label=dict(enumerate(SENTIMENT_LABELS)))
    checkpoint = init_checkpoint(config, root / "ck", seed=33)
    spread_classifier(checkpoint, TEXTS, PAIRS)
    return export_everywhere(checkpoint, root / "export", artifacts_to_build(request, FP32_ARTIFACTS))


@pytest.fixture(scope="module")
def classifier_reference(classifier_export) -> dict:
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(classifier_export / "reference"))
    tokenizer = transformers_tokenizer(classifier_export)
    pipe = transformers.pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    singles = plain(pipe(TEXTS, truncation=True))
    pairs = plain(pipe([{"text": a, "text_pair": b} for a, b in zip(TEXTS, PAIRS)], truncation=True))
    # Similarity: cosine of transformers' own mean-pooled hidden states.
    encoder = transformers.AutoModel.from_pretrained(str(classifier_export / "reference"), attn_implementation="eager")

    def mean_pooled(texts):
        batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            hidden = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"][..., None].float()
        return ((hidden * mask).sum(1) / mask.sum(1)).numpy()

    a, b = mean_pooled(TEXTS), mean_pooled(PAIRS)
    cosines = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return {"singles": singles, "pairs": pairs, "similarity": cosines}


def test_the_classifier_predicts_every_label(classifier_reference):
    assert {row["label"] for row in classifier_reference["singles"] + classifier_reference["pairs"]} == set(SENTIMENT_LABELS)


@pytest.mark.parametrize("runtime,artifact", FP32_RUNS, ids=RUN_IDS)
def test_labels_and_similarity_equal_transformers(classifier_export, classifier_reference, runtime, artifact):
    with runtimes.load(classifier_export, runtime=runtime, artifact=artifact) as rt:
        singles = rt.classify(TEXTS, batch_size=3)
        pairs = rt.classify(TEXTS, pairs=PAIRS, batch_size=3)
        similarity = rt.similarity(TEXTS, PAIRS, pooling="mean")
    where = artifact or runtime
    for got, want in zip(singles, classifier_reference["singles"], strict=True):
        assert_same(got, want, ("label",), f"{where} single")
    for got, want in zip(pairs, classifier_reference["pairs"], strict=True):
        assert_same(got, want, ("label",), f"{where} pair")
    assert np.abs(np.asarray(similarity) - classifier_reference["similarity"]).max() <= SCORE_TOLERANCE


def test_a_one_label_head_is_a_regression_score(tmp_path):
    """1 label: {"score"} = the raw logit, as the pipeline with function_to_apply="none"."""
    config = KoBertConfig(**SHAPE, head="sequence_classification", num_labels=1)
    checkpoint = init_checkpoint(config, tmp_path / "ck", seed=34)
    spread_classifier(checkpoint, TEXTS, PAIRS)
    out = export_everywhere(checkpoint, tmp_path / "export", targets=["onnx"])
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(out / "reference"))
    pipe = transformers.pipeline("text-classification", model=model, tokenizer=transformers_tokenizer(out),
                                 function_to_apply="none", device="cpu")
    want = [row["score"] for row in plain(pipe([{"text": a, "text_pair": b} for a, b in zip(TEXTS, PAIRS)]))]
    for runtime, artifact in (("torch", None), ("onnx", "onnx")):
        with runtimes.load(out, runtime=runtime, artifact=artifact) as rt:
            got = rt.classify(TEXTS, pairs=PAIRS)
        assert all(set(row) == {"score"} for row in got)
        assert np.abs(np.array([row["score"] for row in got]) - want).max() <= SCORE_TOLERANCE


# --- wrong heads and the CLI -----------------------------------------------------------------


def test_a_task_on_the_wrong_head_is_one_clear_error(classifier_export):
    with runtimes.load(classifier_export, runtime="onnx") as rt:
        with pytest.raises(ValueError, match="entities needs a token_classification head"):
            rt.entities(["홍길동"])
        with pytest.raises(ValueError, match="answer needs a question_answering head"):
            rt.answer(["누구?"], ["홍길동"])
        with pytest.raises(ValueError, match="differ in number"):
            rt.classify(["하나", "둘"], pairs=["하나"])


def run_cli(capsys, *argv) -> list[dict]:
    from kobert.cli import main

    assert main(["--quiet", *argv]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_kobert_run_prints_labels_entities_and_answers(capsys, tmp_path, classifier_export, ner_export, qa_export):
    with runtimes.load(classifier_export, runtime="onnx") as rt:
        want_labels = rt.classify(TEXTS)
    rows = run_cli(capsys, "run", str(classifier_export), "--runtime", "onnx", "--output", "labels", "--", *TEXTS)
    assert rows == [{"text": t, **label} for t, label in zip(TEXTS, want_labels)]

    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    with runtimes.load(ner_export, runtime="onnx") as rt:
        want_entities = rt.entities(TEXTS)
    rows = run_cli(capsys, "run", str(ner_export), "--runtime", "onnx", "--output", "entities", "--input", str(lines))
    assert rows == [{"text": t, "entities": e} for t, e in zip(TEXTS, want_entities)]

    questions, contexts = [q for q, _ in QA_ROWS], [c for _, c in QA_ROWS]
    with runtimes.load(qa_export, runtime="onnx") as rt:
        want_answers = rt.answer(questions, contexts)
        want_one = rt.answer([questions[0]] * 2, contexts[2:4])
    rows_file = tmp_path / "qa.tsv"
    rows_file.write_text("".join(f"{q}\t{c}\n" for q, c in QA_ROWS), encoding="utf-8")
    rows = run_cli(capsys, "run", str(qa_export), "--runtime", "onnx", "--output", "answer", "--input", str(rows_file))
    assert rows == [{"text": c, "question": q, **a} for (q, c), a in zip(QA_ROWS, want_answers)]
    rows = run_cli(capsys, "run", str(qa_export), "--runtime", "onnx", "--output", "answer",
                   "--question", questions[0], "--", *contexts[2:4])
    assert [{k: r[k] for k in ("answer", "score", "start", "end")} for r in rows] == want_one


def test_kobert_run_answers_as_the_pipeline_default(capsys, tmp_path, qa_export, qa_reference):
    """`kobert run --output answer` aligns to words, as the pipeline does by default."""
    rows_file = tmp_path / "qa.tsv"
    rows_file.write_text("".join(f"{q}\t{c}\n" for q, c in QA_ROWS), encoding="utf-8")
    rows = run_cli(capsys, "run", str(qa_export), "--runtime", "onnx", "--output", "answer", "--input", str(rows_file))
    assert QA_OPTIONS[1] == dict(doc_stride=128, max_seq_len=384, max_answer_len=30)  # kobert run's settings
    for number, (row, want) in enumerate(zip(rows, qa_reference[1], strict=True)):
        got = {k: row[k] for k in ("answer", "score", "start", "end")}
        assert_same(got, want, ("answer", "start", "end"), f"kobert run question {number}")


def test_an_unknown_aggregation_is_one_clear_error(ner_export):
    with runtimes.load(ner_export, runtime="onnx") as rt:
        with pytest.raises(ValueError, match="aggregation 'mean': expected one of none, simple, first, average, max"):
            rt.entities(["홍길동"], aggregation="mean")


def test_kobert_run_answer_without_a_tab_is_one_clear_error(capsys, qa_export):
    from kobert.cli import main

    assert main(["--quiet", "run", str(qa_export), "--runtime", "onnx", "--output", "answer", "질문 없이"]) == 2
    assert "text 0: expected 'question<TAB>context'" in capsys.readouterr().err
