"""The `kobert` command as acceptance checks call it: a real subprocess, JSON out, exit codes.

Token ids are judged by sentencepiece plus KoBERT's id rule, not by our tokenizer.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece

from kobert.checkpoint import shipped

TOKENIZER_DIR = shipped("tokenizer")


def kobert(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "kobert.cli", *map(str, args)], capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def reference_ids(model_file: Path, text: str) -> list[int]:
    """sentencepiece pieces mapped by KoBERT's rule: 5 specials, then non-control pieces by code point."""
    sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    normal = sorted(sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not (sp.is_control(i) or sp.is_unknown(i)))
    ids = {piece: 5 + i for i, piece in enumerate(normal)}
    return [ids.get(sp.id_to_piece(i), 0) if not sp.is_unknown(i) else 0 for i in sp.encode(text)]


def test_tokenize_prints_one_json_object_per_text():
    texts = ["한국어 모델을 공유합니다.", "이 영화 정말 재밌어요 ㅋㅋ"]
    lines = kobert("tokenize", "--tokenizer", TOKENIZER_DIR / "tokenizer.model", *texts).stdout.splitlines()
    assert len(lines) == 2
    for line, text in zip(lines, texts):
        row = json.loads(line)
        assert set(row) == {"tokens", "input_ids", "token_type_ids", "attention_mask"}
        assert row["input_ids"] == [2, *reference_ids(TOKENIZER_DIR / "tokenizer.model", text), 3]
        assert row["tokens"][0] == "[CLS]" and row["tokens"][-1] == "[SEP]"
        assert row["attention_mask"] == [1] * len(row["input_ids"]) and set(row["token_type_ids"]) == {0}


def test_tokenize_pair_and_the_real_kobert_model(kobert_sp_model_file):
    row = json.loads(kobert("tokenize", "--tokenizer", kobert_sp_model_file, "--pair", "공유합니다.", "한국어 모델을").stdout)
    a, b = reference_ids(kobert_sp_model_file, "한국어 모델을"), reference_ids(kobert_sp_model_file, "공유합니다.")
    assert row["input_ids"] == [2, *a, 3, *b, 3]
    assert row["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    published = json.loads(kobert("tokenize", "--tokenizer", kobert_sp_model_file, "한국어 모델을 공유합니다.").stdout)
    assert published["input_ids"] == [2, 4958, 6855, 2046, 7088, 1050, 7843, 54, 3]


def test_tokenize_bad_tokenizer_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.model"
    bad.write_bytes(b"\x00garbage")
    result = kobert("tokenize", "--tokenizer", bad, "안녕", check=False)
    assert result.returncode != 0 and "broken.model" in result.stderr and "Traceback" not in result.stderr


def test_init_inspect_and_run(tmp_path):
    kobert("init", "--preset", "tiny", "--num-labels", "3", "--seed", "4", "--out", tmp_path / "ck")
    summary = json.loads(kobert("inspect", tmp_path / "ck").stdout)
    assert summary["head"] == "sequence_classification" and summary["num_labels"] == 3
    assert summary["pad_token_id"] == 1 and len(summary["source"]["sha256"]["model.safetensors"]) == 64
    import transformers

    model = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ck")
    assert summary["parameters"] == sum(p.numel() for p in model.parameters())

    kobert("export", tmp_path / "ck", "--to", "onnx,mxnet", "--tokenizer", TOKENIZER_DIR, "--out", tmp_path / "export")
    (tmp_path / "texts.txt").write_text("정말 재밌어요\n별로였다\n", encoding="utf-8")
    logits = {}
    for runtime in ("torch", "onnx", "mxnet"):
        lines = kobert("run", tmp_path / "export", "--runtime", runtime, "--output", "logits", "--input", tmp_path / "texts.txt").stdout.splitlines()
        rows = [json.loads(line) for line in lines]
        assert [r["text"] for r in rows] == ["정말 재밌어요", "별로였다"] and all(len(r["logits"]) == 3 for r in rows)
        logits[runtime] = [r["logits"] for r in rows]
    for runtime in ("onnx", "mxnet"):
        assert max(abs(a - b) for ra, rb in zip(logits[runtime], logits["torch"]) for a, b in zip(ra, rb)) < 1e-4
    row = json.loads(kobert("run", tmp_path / "export", "--runtime", "onnx", "--pooling", "mean", "한국어").stdout)
    assert len(row["embedding"]) == 32


def test_tokenizer_train_command(tmp_path, generated_corpus):
    kobert("tokenizer", "train", generated_corpus, "--vocab-size", "600", "--out", tmp_path / "tok")
    row = json.loads(kobert("tokenize", "--tokenizer", tmp_path / "tok", "한국어 ㅋㅋ").stdout)
    assert row["input_ids"] == [2, *reference_ids(tmp_path / "tok" / "tokenizer.model", "한국어 ㅋㅋ"), 3]


def test_export_of_a_missing_checkpoint_exits_2(tmp_path):
    result = kobert("export", tmp_path / "nope", "--out", tmp_path / "out", check=False)
    assert result.returncode == 2 and "no such file or directory" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [["parity", "/nonexistent"], ["run", "/nonexistent", "--runtime", "onnx", "x"]])
def test_missing_export_dir_is_a_clear_error(command):
    result = kobert(*command, check=False)
    assert result.returncode == 2 and "manifest.json" in result.stderr


def test_demo_runs_offline_on_the_shipped_default(tmp_path):
    """README command 1's main job: export the shipped default everywhere and agree on every review."""
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "kobert.cli", "demo", "--out", str(tmp_path / "demo")],
                            capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "all runtimes agree on every label: True" in result.stdout
    assert "| 시간 낭비였다. 최악의 영화 | negative" in result.stdout
    manifest = json.loads((tmp_path / "demo" / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "default" and set(manifest["artifacts"]) == {"onnx", "tf", "tf2onnx", "mxnet"}


def test_default_names_the_shipped_model_everywhere():
    import kobert as package

    summary = json.loads(kobert("inspect", "default").stdout)
    assert summary["head"] == "sequence_classification" and summary["config"]["id2label"] == {"0": "negative", "1": "positive"}
    model = package.get_kobert_model()
    assert type(model).__name__ == "BertForSequenceClassification"
    assert summary["parameters"] == sum(p.numel() for p in model.parameters())
    assert len(package.get_tokenizer()) == model.config.vocab_size == 8002
