"""hf-onnx: the Hugging Face folder loads unchanged in Optimum (transformers 4.57) and transformers.js (Node).

Both clients run outside kobert: Optimum in its own venv (`.venv-hf4`, made by
ci/setup.sh: optimum-onnx needs transformers < 4.58) with a clean environment, so
kobert is not importable there; transformers.js from `web/node_modules`. Their
ids and outputs are compared with kobert's tokenizer and the torch reference.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kobert import runtimes
from kobert.cli import main as kobert_cli
from kobert.registry import build_order

REPO_ROOT = Path(__file__).resolve().parents[1]
OPTIMUM_PYTHON = Path(os.environ.get("KOBERT_OPTIMUM_PYTHON", REPO_ROOT / ".venv-hf4" / "bin" / "python"))
WEB_DIR = REPO_ROOT / "web"
TOKENIZER = REPO_ROOT / "kobert" / "assets" / "tokenizer"
FP32_GATE = 1e-4
# The tiny random model's logits are about 0.02; int8 moves them by about 2e-4.
INT8_GATE = 5e-3

TEXTS = ["이 영화 정말 재밌어요 ㅋㅋㅋ", "최악이다ㅠㅠ.... 시간 아까움", "배우들 연기는 좋았는데 스토리가 별로",
         "～ 漢字 BERT 2019^^", "굿"]
LONG_TEXT = "정말 지루하고 뻔한 영화였다 " * 120  # over the tokenizer's 512 tokens

OPTIMUM_SCRIPT = r"""
import json, sys
import transformers
from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTModelForSequenceClassification
from transformers import AutoTokenizer

request = json.load(open(sys.argv[1], encoding="utf-8"))
folder = request["model_dir"]
tokenizer = AutoTokenizer.from_pretrained(folder)
encoded = tokenizer(request["texts"], padding=True, truncation=True, return_tensors="np")
model_class = ORTModelForSequenceClassification if request["head"] else ORTModelForFeatureExtraction
output = "logits" if request["head"] else "last_hidden_state"
result = {"transformers": transformers.__version__, "tokenizer_class": type(tokenizer).__name__,
          "input_ids": encoded["input_ids"].tolist(), "attention_mask": encoded["attention_mask"].tolist(),
          output: getattr(model_class.from_pretrained(folder)(**encoded), output).tolist()}
if request.get("quantized"):
    quantized = model_class.from_pretrained(folder, subfolder="onnx", file_name="model_quantized.onnx")
    result["quantized_" + output] = getattr(quantized(**encoded), output).tolist()
try:
    import kobert
    result["kobert_importable"] = True
except ImportError:
    result["kobert_importable"] = False
print(json.dumps(result))
"""


def clean_env() -> dict[str, str]:
    """No PYTHONPATH (kobert must not be importable) and no hub access."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "LANG": "C.UTF-8"}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A tiny classifier (fp32 + int8 in the folder) and a tiny encoder (fp32 only), through the CLI."""
    root = tmp_path_factory.mktemp("hf")
    made = {}
    for name, init_args, targets in (("classifier", ["--num-labels", "2"], "onnx-int8,hf-onnx"),
                                     ("encoder", [], "hf-onnx")):
        assert kobert_cli(["init", "--preset", "tiny", *init_args, "--out", str(root / f"{name}-ck")]) == 0
        assert kobert_cli(["export", str(root / f"{name}-ck"), "--to", targets, "--tokenizer", str(TOKENIZER),
                           "--out", str(root / name)]) == 0
        made[name] = root / name
    return made


def torch_reference(export_dir: Path, texts: list[str]) -> tuple[dict, dict]:
    with runtimes.load(export_dir, runtime="torch") as reference:
        inputs = reference.encode(texts)
        return inputs, reference.run(**inputs)


def valid_tokens_max_abs(got, want, mask) -> float:
    valid = np.asarray(mask, dtype=bool)
    return float(np.abs(np.asarray(got, np.float32)[valid] - want[valid]).max())


def test_folder_layout_and_manifest(exports):
    classifier, encoder = exports["classifier"] / "hf-onnx", exports["encoder"] / "hf-onnx"
    assert build_order(["hf-onnx", "onnx-int8"]) == ["onnx", "onnx-int8", "hf-onnx"]
    for folder in (classifier, encoder):
        config = json.loads((folder / "config.json").read_text())
        assert config["model_type"] == "bert"
        tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
        assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
        assert "backend" not in tokenizer_config
        special = json.loads((folder / "special_tokens_map.json").read_text())
        assert special == {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                           "cls_token": "[CLS]", "mask_token": "[MASK]"}
        assert (folder / "tokenizer.json").read_bytes() == (folder.parent / "tokenizer" / "tokenizer.json").read_bytes()
    config = json.loads((classifier / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "LABEL_0", "1": "LABEL_1"} and config["label2id"] == {"LABEL_0": 0, "LABEL_1": 1}
    assert "transformers.js_config" not in config  # the q8 file is there for the browser default
    assert sorted(p.name for p in (classifier / "onnx").iterdir()) == ["model.onnx", "model_quantized.onnx"]
    assert (classifier / "onnx" / "model_quantized.onnx").read_bytes() == \
        (exports["classifier"] / "onnx-int8" / "model.onnx").read_bytes()
    assert json.loads((encoder / "config.json").read_text())["architectures"] == ["BertModel"]
    assert sorted(p.name for p in (encoder / "onnx").iterdir()) == ["model.onnx"]
    assert not (exports["encoder"] / "onnx").exists(), "the fp32 ONNX was only an input"

    manifest = json.loads((exports["classifier"] / "manifest.json").read_text())
    entry = manifest["artifacts"]["hf-onnx"]
    assert entry["files"] == ["hf-onnx"]
    assert set(entry["sha256"]) == {str(p.relative_to(exports["classifier"]))
                                    for p in classifier.rglob("*") if p.is_file()}
    assert manifest["artifacts"]["hf-onnx"]["parity"]["passed"]


def test_kobert_onnx_runtime_opens_the_folder(exports):
    inputs, want = torch_reference(exports["classifier"], TEXTS)
    with runtimes.load(exports["classifier"], runtime="onnx", artifact="hf-onnx") as runtime:
        got = runtime.run(**inputs)
    assert np.abs(got["logits"] - want["logits"]).max() <= FP32_GATE


def test_hf_onnx_needs_a_tokenizer(tmp_path, capsys):
    assert kobert_cli(["init", "--preset", "tiny", "--out", str(tmp_path / "ck")]) == 0
    assert kobert_cli(["export", str(tmp_path / "ck"), "--to", "hf-onnx", "--out", str(tmp_path / "out")]) == 2
    assert "hf-onnx needs the export's tokenizer (export with --tokenizer PATH)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- Optimum ----------------------------------------------------------------------------------


def run_optimum(tmp_path: Path, request: dict) -> dict:
    if not OPTIMUM_PYTHON.is_file():
        pytest.skip(f"{OPTIMUM_PYTHON}: no Optimum venv (bash ci/setup.sh makes .venv-hf4)")
    script, request_file = tmp_path / "optimum_check.py", tmp_path / "request.json"
    script.write_text(OPTIMUM_SCRIPT, encoding="utf-8")
    request_file.write_text(json.dumps(request, ensure_ascii=False), encoding="utf-8")
    proc = subprocess.run([str(OPTIMUM_PYTHON), str(script), str(request_file)], env=clean_env(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["kobert_importable"] is False and result["transformers"].startswith("4.")
    assert result["tokenizer_class"] == "PreTrainedTokenizerFast"
    return result


def test_optimum_sequence_classification(exports, tmp_path):
    texts = TEXTS + [LONG_TEXT]
    inputs, want = torch_reference(exports["classifier"], texts)
    got = run_optimum(tmp_path, {"model_dir": str(exports["classifier"] / "hf-onnx"), "head": True,
                                 "texts": texts, "quantized": True})
    assert np.array_equal(got["input_ids"], inputs["input_ids"])  # transformers 4.57 truncates like kobert
    assert np.array_equal(got["attention_mask"], inputs["attention_mask"])
    assert np.abs(np.asarray(got["logits"]) - want["logits"]).max() <= FP32_GATE
    assert np.abs(np.asarray(got["quantized_logits"]) - want["logits"]).max() <= INT8_GATE


def test_optimum_feature_extraction(exports, tmp_path):
    inputs, want = torch_reference(exports["encoder"], TEXTS)
    got = run_optimum(tmp_path, {"model_dir": str(exports["encoder"] / "hf-onnx"), "head": False, "texts": TEXTS})
    assert np.array_equal(got["input_ids"], inputs["input_ids"])
    assert valid_tokens_max_abs(got["last_hidden_state"], want["last_hidden_state"],
                                inputs["attention_mask"]) <= FP32_GATE


# --- transformers.js in Node --------------------------------------------------------------------


def run_transformers_js(tmp_path: Path, request: dict) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node: not installed (ci/setup.sh needs Node.js for transformers.js)")
    if not (WEB_DIR / "node_modules" / "@huggingface" / "transformers").is_dir():
        pytest.skip(f"{WEB_DIR / 'node_modules'}: no transformers.js (ci/setup.sh runs npm ci in web/)")
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps(request, ensure_ascii=False), encoding="utf-8")
    proc = subprocess.run([node, str(WEB_DIR / "node_check.mjs"), str(request_file)], cwd=WEB_DIR,
                          env=clean_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("dtype", ["fp32", "q8"])
def test_transformers_js_text_classification(exports, tmp_path, dtype):
    inputs, want = torch_reference(exports["classifier"], TEXTS)
    got = run_transformers_js(tmp_path, {"model_dir": str(exports["classifier"] / "hf-onnx"),
                                         "task": "text-classification", "dtype": dtype, "texts": TEXTS})
    assert np.array_equal(got["input_ids"], inputs["input_ids"])
    gate = FP32_GATE if dtype == "fp32" else INT8_GATE
    assert np.abs(np.asarray(got["outputs"]["logits"]) - want["logits"]).max() <= gate
    # The pipeline's own answer: every label with its softmax score.
    probabilities = softmax(want["logits"])
    for row, labels in zip(probabilities, got["pipeline"]):
        scores = {item["label"]: item["score"] for item in labels}
        assert np.abs(np.array([scores["LABEL_0"], scores["LABEL_1"]]) - row).max() <= gate


def test_transformers_js_feature_extraction(exports, tmp_path):
    inputs, want = torch_reference(exports["encoder"], TEXTS)
    got = run_transformers_js(tmp_path, {"model_dir": str(exports["encoder"] / "hf-onnx"),
                                         "task": "feature-extraction", "dtype": "fp32", "texts": TEXTS})
    assert np.array_equal(got["input_ids"], inputs["input_ids"])
    mask = inputs["attention_mask"]
    assert valid_tokens_max_abs(got["outputs"]["last_hidden_state"], want["last_hidden_state"], mask) <= FP32_GATE
    assert valid_tokens_max_abs(got["pipeline"], want["last_hidden_state"], mask) <= FP32_GATE


def test_transformers_js_truncation_drops_the_final_sep(exports, tmp_path):
    """transformers.js cuts after adding specials: over the limit, [SEP] is lost (the web page avoids this)."""
    inputs, _ = torch_reference(exports["encoder"], [LONG_TEXT])
    got = run_transformers_js(tmp_path, {"model_dir": str(exports["encoder"] / "hf-onnx"),
                                         "task": "feature-extraction", "dtype": "fp32", "texts": [LONG_TEXT],
                                         "repeats": 0})
    ours, theirs = inputs["input_ids"][0].tolist(), got["input_ids"][0]
    assert len(ours) == len(theirs) == 512
    assert ours[-1] == 3 and theirs[-1] != 3
    assert theirs[:-1] == ours[:-1]
