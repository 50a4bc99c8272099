"""The tf-text target: a SavedModel that takes raw text, against kobert's tokenizer and the torch reference.

The shipped default model is exported once with `--to tf-text`. Its text
signatures are then called with plain TensorFlow (+ tensorflow_text) in a
process where kobert cannot be imported, through the runtime, and through the
TF Serving REST shim over real HTTP; ids are compared with kobert's Python
tokenizer (`runtime="torch"`'s encode) and outputs with the torch reference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("torch")
pytest.importorskip("tensorflow_text", reason="tensorflow-text not installed (ci/setup.sh installs it --no-deps)")

from conftest import python_sentencepiece, shared_data_dir  # noqa: E402

ATOL = 1e-4  # the fp32 gate
TEXTS = ["한국어 모델을 공유합니다.", "이 영화 정말 재밌어요 ㅋㅋㅋ 강추!!", "스토리가 너무 지루하고 연기도 별로였다....",
         "", "서울特別市 날씨가 좋네요 😊", "ＡＢＣ　전각 문자와  여러   공백 "]
LONG = "배우들의 연기가 훌륭했지만 결말이 아쉬웠습니다. " * 20  # far past the 64-token length
PAIRS = [("이 영화 어때?", "정말 재밌어요"), (LONG, "짧은 답"), ("짧은 질문", LONG), (LONG, LONG)]


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    from kobert.export import export

    out = tmp_path_factory.mktemp("tftext") / "exp"
    export("default", out, targets="tf-text")
    return out


@pytest.fixture(scope="module")
def reference(export_dir):
    import kobert.runtimes

    with kobert.runtimes.load(export_dir, runtime="torch") as runtime:
        yield runtime


def assert_ids_equal(got: dict, want: dict, label: str) -> None:
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        assert np.asarray(got[name]).dtype == np.int64, f"{label}: {name} is {np.asarray(got[name]).dtype}"
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"{label}: {name}")


def assert_outputs_close(got: dict, want: dict, mask: np.ndarray, label: str) -> dict:
    errors = {}
    for name, expected in want.items():
        actual = np.asarray(got[name])
        if name == "last_hidden_state":
            actual, expected = actual[mask.astype(bool)], expected[mask.astype(bool)]
        errors[name] = float(np.max(np.abs(actual - expected)))
    print(label, {k: f"{v:.2e}" for k, v in errors.items()})
    assert max(errors.values()) <= ATOL, f"{label}: {errors}"
    return errors


# --- the export -----------------------------------------------------------------------------


def test_manifest_entry_and_parity(export_dir):
    manifest = json.loads((export_dir / "manifest.json").read_text())
    entry = manifest["artifacts"]["tf-text"]
    assert entry["files"] == ["tf-text"]
    assert entry["signature"] == "serving_ids" and entry["text_signature"] == "serving_default"
    assert entry["max_length"] == 64  # min(512 positions, the tokenizer's model_max_length)
    assert entry["parity"]["passed"] and entry["parity"]["checks"]["text_path"] == "ok"
    # the SentencePiece model travelled with the tokenizer and is covered by its sha256
    assert "tokenizer/tokenizer.model" in manifest["tokenizer_sha256"]


# --- plain TensorFlow, kobert not importable ----------------------------------------------------


def test_plain_savedmodel_without_kobert(export_dir, reference, tmp_path):
    """What a TensorFlow team does: import tensorflow_text, load, send strings."""
    script = textwrap.dedent(f"""
        import json, sys
        sys.modules["kobert"] = None  # any import of kobert now fails
        import numpy as np, tensorflow as tf
        import tensorflow_text  # registers the SentencePiece op before the load
        export = {str(export_dir)!r}
        entry = json.load(open(export + "/manifest.json"))["artifacts"]["tf-text"]
        model = tf.saved_model.load(export + "/" + entry["files"][0])
        texts = {TEXTS + [LONG]!r}
        pairs = {PAIRS!r}
        single = model.signatures["serving_default"](text=tf.constant(texts))
        pair = model.signatures["serving_pair"](text=tf.constant([a for a, _ in pairs]),
                                                text_pair=tf.constant([b for _, b in pairs]))
        np.savez({str(tmp_path / "single.npz")!r}, **{{k: v.numpy() for k, v in single.items()}})
        np.savez({str(tmp_path / "pair.npz")!r}, **{{k: v.numpy() for k, v in pair.items()}})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-3000:]

    for name, (firsts, seconds) in {"single": (TEXTS + [LONG], None),
                                    "pair": ([a for a, _ in PAIRS], [b for _, b in PAIRS])}.items():
        got = dict(np.load(tmp_path / f"{name}.npz"))
        want_ids = reference.encode(firsts, seconds)
        assert_ids_equal(got, want_ids, name)
        assert got["input_ids"].shape[1] == 64  # the long texts were truncated to the tokenizer's length
        want = reference.run(**want_ids)
        assert set(got) == {*want, *want_ids}
        assert_outputs_close(got, want, want_ids["attention_mask"], f"plain tf {name}")


# --- the runtime --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runtime(export_dir):
    import kobert.runtimes

    with kobert.runtimes.load(export_dir, runtime="tf-text") as opened:
        yield opened


def test_runtime_text_and_id_paths(runtime, reference):
    assert_ids_equal(runtime.encode(TEXTS), reference.encode(TEXTS), "encode")
    firsts, seconds = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    assert_ids_equal(runtime.encode(firsts, seconds), reference.encode(firsts, seconds), "encode pairs")
    inputs = reference.encode(TEXTS)
    # run(): the id signature, fed the Python tokenizer's ids
    assert_outputs_close(runtime.run(**inputs), reference.run(**inputs), inputs["attention_mask"], "run (ids)")
    # logits(): through the in-graph tokenizer, rows back in input order
    np.testing.assert_allclose(runtime.logits(TEXTS + [LONG], batch_size=2),
                               reference.logits(TEXTS + [LONG], batch_size=2), atol=ATOL)


def test_classify_takes_the_graph_path_as_logits_does(runtime, reference, monkeypatch):
    """`classify` tokenizes in the graph, as `logits`: with kobert's Python tokenizer taken away it still
    answers, and its labels and scores are the softmax of the graph path's logits (torch's labels too)."""
    texts = TEXTS + [LONG]
    logits = runtime.logits(texts)
    monkeypatch.setattr(type(runtime), "text_encoder", property(lambda self: pytest.fail("Python tokenizer used")))
    rows = runtime.classify(texts)
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    labels = [runtime.config.id2label[i] for i in logits.argmax(-1)]
    assert [row["label"] for row in rows] == labels == [row["label"] for row in reference.classify(texts)]
    np.testing.assert_allclose([row["score"] for row in rows], probabilities.max(-1), atol=1e-6)


def test_runtime_refuses_what_the_python_encoder_refuses(runtime):
    with pytest.raises(ValueError, match="text 1: expected a str"):
        runtime.encode(["좋다", 3])
    with pytest.raises(ValueError, match="2 texts but 1 pairs"):
        runtime.encode(["a", "b"], ["c"])


def test_longest_first_is_tokenizers_rule():
    """The graph's pair truncation against `tokenizers` itself, one token per word, every split."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    from kobert.exporters.tf_text import longest_first

    words = {f"w{i}": i + 5 for i in range(40)}
    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "[CLS]": 2, "[SEP]": 3, **words}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    for max_length in (7, 8):
        backend.enable_truncation(max_length)
        cases = [(a, b) for a in range(12) for b in range(12)]
        keep_a, keep_b = longest_first(tf.constant([a for a, _ in cases], tf.int64),
                                       tf.constant([b for _, b in cases], tf.int64), max_length - 3)
        for (a, b), got_a, got_b in zip(cases, keep_a.numpy(), keep_b.numpy()):
            encoding = backend.encode(" ".join(f"w{i}" for i in range(a)), " ".join(f"w{i}" for i in range(b)))
            types = np.asarray(encoding.type_ids)
            want = (int((types == 0).sum()) - 2, int((types == 1).sum()) - 1)
            assert (int(got_a), int(got_b)) == want, (max_length, a, b)


def test_parity_text_path_check_fails_on_other_ids_or_outputs():
    """The parity engine's text_path check, on a stand-in runtime: tie reorderings pass, the rest fail."""
    from kobert.parity import GATES, GoldenCase, check_text_path

    ids = np.array([[2, 10, 11, 12, 3], [2, 20, 21, 3, 1]])
    mask = (ids != 1).astype(np.int64)
    case = GoldenCase("korean_texts", ids, mask, np.zeros_like(ids), texts=("a", "b"))
    logits = np.array([[0.5, -0.5], [1.0, 2.0]], np.float32)

    class StandIn:
        def __init__(self, ids, logits):
            self.ids, self.logits = ids, logits

        def run_texts(self, texts, pairs):
            return {"input_ids": self.ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids),
                    "logits": self.logits}

    def check(got_ids, got_logits):
        return check_text_path(StandIn(got_ids, got_logits), {"korean_texts": {"logits": logits}}, [case],
                               GATES["fp32"], ())

    assert check(ids, logits) == "ok"
    reordered = ids.copy()
    reordered[0, 1:4] = [12, 10, 11]  # the same pieces in another order: a tie, that row not compared
    assert check(reordered, logits + np.array([[9, 9], [0, 0]], np.float32)) == "ok"
    other = ids.copy()
    other[1, 2] = 22
    assert "row 1: the graph's ids differ" in check(other, logits)
    assert "max-abs" in check(ids, logits + 1e-3)
    assert "no golden texts" in check_text_path(StandIn(ids, logits), {}, [GoldenCase("x", ids, mask, ids * 0)],
                                                GATES["fp32"], ())


# --- what the exporter refuses ------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights():
    from kobert.checkpoint import load_checkpoint

    return load_checkpoint("default").weights


def test_export_without_sentencepiece_model_is_one_clear_line(export_dir, weights, tmp_path):
    from kobert.exporters import tf_text

    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "tokenizer.json").write_bytes((export_dir / "tokenizer" / "tokenizer.json").read_bytes())
    with pytest.raises(tf_text.SentencePieceFileError, match=r"tokenizer\.model: missing; the tf-text target") as e:
        tf_text.export(weights, tmp_path)
    assert "\n" not in str(e.value)


def test_export_refuses_a_model_that_is_not_the_tokenizer(export_dir, weights, tmp_path):
    from kobert.exporters import tf_text

    (tmp_path / "tokenizer").mkdir()
    for name in ("tokenizer.model", "tokenizer_config.json"):
        (tmp_path / "tokenizer" / name).write_bytes((export_dir / "tokenizer" / name).read_bytes())
    data = json.loads((export_dir / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    vocab[100], vocab[101] = vocab[101], vocab[100]  # two pieces trade ids
    (tmp_path / "tokenizer" / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(tf_text.SentencePieceFileError, match="a different tokenizer"):
        tf_text.export(weights, tmp_path)


# --- TensorFlow Serving's REST shape, through the loopback shim ----------------------------------


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_tf_serving_rest_predict(export_dir, reference):
    from kobert.tasks import softmax
    from kobert.tf_serving_shim import serving

    texts = TEXTS[:3]
    want_ids = reference.encode(texts)
    want = reference.run(**want_ids)
    with serving(export_dir / "tf-text", name="kobert") as base:
        predict = f"{base}/v1/models/kobert:predict"
        with urllib.request.urlopen(f"{base}/v1/models/kobert", timeout=30) as response:
            assert json.loads(response.read())["model_version_status"][0]["state"] == "AVAILABLE"

        # row format, bare strings for the one-input serving_default: the classification, not the hidden states
        status, body = post(predict, {"instances": texts})
        assert status == 200 and len(body["predictions"]) == len(texts)
        rows = body["predictions"]
        assert set(rows[0]) == {*want, *want_ids, "probabilities", "label"} - {"last_hidden_state"}
        np.testing.assert_allclose([row["logits"] for row in rows], want["logits"], atol=ATOL)
        np.testing.assert_allclose([row["probabilities"] for row in rows], softmax(want["logits"]), atol=ATOL)
        assert [row["label"] for row in rows] == [reference.config.label_names[i] for i in want["logits"].argmax(-1)]
        np.testing.assert_array_equal([row["input_ids"] for row in rows], want_ids["input_ids"])

        # the per-token hidden states when asked for
        status, body = post(predict, {"instances": texts[:1], "output_filter": ["last_hidden_state"]})
        assert status == 200 and set(body["predictions"][0]) == {"last_hidden_state"}
        length = int(want_ids["attention_mask"][0].sum())
        np.testing.assert_allclose(np.asarray(body["predictions"][0]["last_hidden_state"])[:length],
                                   want["last_hidden_state"][0][:length], atol=ATOL)

        # row format, named inputs, the pair signature, on a versioned URL
        firsts, seconds = [a for a, _ in PAIRS[:2]], [b for _, b in PAIRS[:2]]
        status, body = post(f"{base}/v1/models/kobert/versions/1:predict",
                            {"signature_name": "serving_pair",
                             "instances": [{"text": a, "text_pair": b} for a, b in zip(firsts, seconds)]})
        assert status == 200
        pair_ids = reference.encode(firsts, seconds)
        np.testing.assert_array_equal([row["token_type_ids"] for row in body["predictions"]], pair_ids["token_type_ids"])
        np.testing.assert_allclose([row["logits"] for row in body["predictions"]],
                                   reference.run(**pair_ids)["logits"], atol=ATOL)

        # columnar format
        status, body = post(predict, {"inputs": {"text": texts}})
        assert status == 200
        np.testing.assert_allclose(body["outputs"]["logits"], want["logits"], atol=ATOL)

        # what TF Serving refuses, it refuses here with a 400 and one error line
        status, body = post(predict, {"signature_name": "nope", "instances": texts})
        assert status == 400 and "no such signature" in body["error"]
        status, body = post(predict, {"signature_name": "serving_pair", "instances": texts})
        assert status == 400 and "several inputs" in body["error"]
        status, _ = post(f"{base}/v1/models/other:predict", {"instances": texts})
        assert status == 404
        status, body = post(predict, {"signature_name": "serving_ids", "instances": [
            {"input_ids": [2, 10 ** 6, 3], "attention_mask": [1, 1, 1], "token_type_ids": [0, 0, 0]}]})
        assert status == 400 and "is not in [0, " in body["error"], body  # the op's words, not "Graph execution error:"


# --- 1,000 NSMC reviews through the text signature ---------------------------------------------------


@pytest.mark.shared_data
def test_nsmc_reviews_through_the_signature(export_dir, reference):
    """Raw reviews in, against kobert's Python tokenizer and the same BERT fed its ids (`serving_ids`, which
    parity ties to torch): any difference in ids or labels comes from the in-graph tokenizer."""
    from kobert.datasets import read_nsmc

    path = shared_data_dir() / "nsmc" / "ratings_test.txt"
    if not path.is_file():
        pytest.skip(f"{path}: shared data not available")
    texts = read_nsmc(path, limit=1000).texts
    model = tf.saved_model.load(str(export_dir / "tf-text"))
    signature, ids_signature = model.signatures["serving_default"], model.signatures["serving_ids"]
    signature(text=tf.constant(texts[:2]))  # trace and warm up outside the clock
    start = time.perf_counter()
    got = [signature(text=tf.constant(texts[i:i + 64])) for i in range(0, len(texts), 64)]
    seconds = time.perf_counter() - start

    exact = ties = labels_equal = same_as_sentencepiece = 0
    others = []
    sentencepiece_ids = python_sentencepiece(export_dir / "tokenizer" / "tokenizer.model")
    for k, outputs in enumerate(got):
        batch = texts[k * 64:(k + 1) * 64]
        want_ids = reference.encode(batch)
        want_labels = ids_signature(**{k: tf.constant(v) for k, v in want_ids.items()})["logits"].numpy().argmax(-1)
        labels_equal += int((outputs["logits"].numpy().argmax(-1) == want_labels).sum())
        ids, mask = outputs["input_ids"].numpy(), outputs["attention_mask"].numpy()
        for row, text in enumerate(batch):
            mine = ids[row, :mask[row].sum()]
            ours = want_ids["input_ids"][row, :want_ids["attention_mask"][row].sum()]
            same_as_sentencepiece += int(mine[1:-1].tolist() == sentencepiece_ids(text)[:62])
            if np.array_equal(mine, ours):
                exact += 1
            elif sorted(mine) == sorted(ours):
                ties += 1
            else:
                others.append(text)
    print(f"1,000 NSMC reviews through serving_default: {seconds:.2f} s (batches of 64), ids equal {exact}, "
          f"tie reorderings {ties}, other differences {len(others)}, labels equal {labels_equal}; "
          f"ids equal to Python sentencepiece's {same_as_sentencepiece}")
    assert not others, others[:3]
    assert ties <= 30  # exact score ties only (measured on this file: docs/deploy/tf-serving.md)
    assert labels_equal >= 995


# --- the real KoBERT vocabulary ---------------------------------------------------------------------


def test_real_kobert_model_gives_the_published_ids(kobert_sp_model_file, tmp_path):
    """KoBERT's own SentencePiece file as `--tokenizer` (a file source): the graph gives KoBERT's published ids."""
    import kobert.runtimes
    from kobert.checkpoint import init_checkpoint
    from kobert.config import preset
    from kobert.export import export

    checkpoint = init_checkpoint(preset("tiny").with_head("sequence_classification", 2), tmp_path / "ck", seed=3)
    out = tmp_path / "exp"
    export(checkpoint, out, targets="tf-text", tokenizer=kobert_sp_model_file)
    with kobert.runtimes.load(out, runtime="tf-text") as runtime, kobert.runtimes.load(out, runtime="torch") as ref:
        assert runtime.encode(["한국어 모델을 공유합니다."])["input_ids"].tolist() == [
            [2, 4958, 6855, 2046, 7088, 1050, 7843, 54, 3]]
        texts = TEXTS + [LONG]
        assert_ids_equal(runtime.encode(texts), ref.encode(texts), "real KoBERT vocabulary")
        # no model_max_length in a bare .model: truncation at the model's positions
        assert runtime.encode([LONG * 3])["input_ids"].shape[1] == ref.config.max_position_embeddings
