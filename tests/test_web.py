"""`kobert package web`: the page in headless Chromium (onnxruntime-web wasm) and the same kobert.js in Node.

One Chromium launch for the module: `web/browser_check.mjs` (puppeteer-core) opens a
classifier page and an encoder page served by the package's own serve.py (COOP/COEP,
127.0.0.1, free port), waits for `window.kobert.ready`, calls `window.kobert.run`,
and screenshots the classifier page with a review typed in. Ids are compared with
kobert's tokenizer and outputs with the torch reference and Python onnxruntime.
The server, Node and Chromium are stopped by their own PIDs in `finally`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_data_dir
from kobert import runtimes
from kobert.cli import main as kobert_cli

REPO_ROOT = Path(__file__).resolve().parents[1]
WEB_DIR = REPO_ROOT / "web"
TOKENIZER = REPO_ROOT / "kobert" / "assets" / "tokenizer"
CHROMIUM = os.environ.get("KOBERT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
FP32_GATE = 1e-4
SHORT_LIMIT = 64  # the classifier's tokenizer says model_max_length 64, like the shipped default

TEXTS = ["이 영화 정말 재밌어요 ㅋㅋㅋ", "최악이다ㅠㅠ.... 시간 아까움", "배우들 연기는 좋았는데 스토리가 별로",
         "～ 漢字 BERT 2019^^", "", "굿",
         "처음부터 끝까지 지루하고 뻔한 전개에 배우들의 연기마저 어색해서 보는 내내 시계만 쳐다봤다 " * 6]
SCREENSHOT_TEXT = "배우들 연기가 정말 좋았고 음악도 아름다웠어요"

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="node: not installed (ci/setup.sh expects Node.js)"),
    pytest.mark.skipif(not (WEB_DIR / "node_modules" / "puppeteer-core").is_dir(),
                       reason="web/node_modules: missing (ci/setup.sh runs npm ci in web/)"),
]


def clean_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A tiny classifier (tokenizer limited to 64 tokens) and a tiny encoder (512), each with its web package."""
    root = tmp_path_factory.mktemp("web")
    short_tokenizer = root / "tokenizer-64"
    shutil.copytree(TOKENIZER, short_tokenizer)
    settings = json.loads((short_tokenizer / "tokenizer_config.json").read_text())
    settings["model_max_length"] = SHORT_LIMIT
    (short_tokenizer / "tokenizer_config.json").write_text(json.dumps(settings))
    made = {}
    for name, init_args, tokenizer in (("classifier", ["--num-labels", "2"], short_tokenizer),
                                       ("encoder", [], TOKENIZER)):
        assert kobert_cli(["init", "--preset", "tiny", *init_args, "--out", str(root / f"{name}-ck")]) == 0
        assert kobert_cli(["export", str(root / f"{name}-ck"), "--to", "onnx", "--tokenizer", str(tokenizer),
                           "--out", str(root / name)]) == 0
        assert kobert_cli(["package", "web", str(root / name), "--out", str(root / "site" / name)]) == 0
        made[name] = root / name
    made["site"] = root / "site"
    return made


def nsmc_reviews(limit: int = 1000) -> list[str]:
    path = shared_data_dir() / "nsmc" / "ratings_test.txt"
    if not path.is_file():
        return []
    from kobert.datasets import read_nsmc

    return read_nsmc(path, limit=limit).texts


@pytest.fixture(scope="module")
def browser(exports, tmp_path_factory):
    """Everything the browser gives, from one server and one Chromium run."""
    if CHROMIUM is None:
        pytest.skip("chromium: not installed (ci/setup.sh installs Debian's chromium)")
    work = tmp_path_factory.mktemp("browser")
    site = exports["site"]
    server = subprocess.Popen([sys.executable, str(site / "classifier" / "serve.py"), "--port", "0",
                               "--directory", str(site)], stdout=subprocess.PIPE, text=True)
    try:
        base = server.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:"), base
        reviews = nsmc_reviews()
        request = {"chromium": CHROMIUM, "pages": [
            {"url": f"{base}classifier/", "texts": TEXTS, "repeats": 5, "encode": reviews,
             "screenshot": {"path": str(work / "page.png"), "text": SCREENSHOT_TEXT}},
            {"url": f"{base}encoder/", "texts": TEXTS, "repeats": 5},
        ]}
        (work / "request.json").write_text(json.dumps(request, ensure_ascii=False), encoding="utf-8")
        events = run_browser_driver(work / "request.json")
    finally:
        server.kill()
        server.wait(timeout=10)
    pages = dict(zip(["classifier", "encoder"], next(e for e in events if e["event"] == "result")["pages"]))
    for name, page in pages.items():
        assert not page.get("error"), f"{name}: {page['error']}\n{page['console']}"
    return {"pages": pages, "screenshot": work / "page.png", "reviews": reviews}


def run_browser_driver(request: Path, timeout: float = 240) -> list[dict]:
    """The driver's JSON events; if it had to be stopped, Chromium (whose pid it printed first) is stopped too."""
    driver = subprocess.Popen(["node", str(WEB_DIR / "browser_check.mjs"), str(request)], cwd=WEB_DIR,
                              env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = driver.communicate(timeout=timeout)
    finally:
        if driver.poll() is None:  # timed out or interrupted
            driver.kill()
            stdout, stderr = driver.communicate()
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    if driver.returncode != 0:
        for event in events:
            if event["event"] == "chromium" and event["pid"]:
                stop_chromium(event["pid"])
    assert driver.returncode == 0, stderr[-3000:]
    return events


def stop_chromium(pid: int) -> None:
    """SIGKILL the pid if it still is a Chromium (a pid may be reused once its process is gone)."""
    try:
        if "chrom" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            os.kill(pid, signal.SIGKILL)
    except (FileNotFoundError, ProcessLookupError):
        pass


def our_ids(export_dir: Path, texts: list[str]) -> list[list[int]]:
    with runtimes.load(export_dir, runtime="torch") as reference:
        return [e.ids for e in reference.text_encoder.encodings(texts)]


def torch_outputs(export_dir: Path, texts: list[str]) -> dict:
    with runtimes.load(export_dir, runtime="torch") as reference:
        return reference.run(**reference.encode(texts))


def test_page_ids_are_kobert_ids_also_past_the_limit(exports, browser):
    for name, limit in (("classifier", SHORT_LIMIT), ("encoder", 512)):
        got = browser["pages"][name]["result"]["input_ids"]
        want = our_ids(exports[name], TEXTS)
        assert got == want, name
        long = want[-1]
        assert (len(long) == SHORT_LIMIT and long[-1] == 3) if limit == SHORT_LIMIT else len(long) < limit


def test_page_logits_match_torch_and_onnxruntime(exports, browser):
    page = browser["pages"]["classifier"]["result"]
    want = torch_outputs(exports["classifier"], TEXTS)["logits"]
    assert np.abs(np.asarray(page["logits"]) - want).max() <= FP32_GATE
    with runtimes.load(exports["classifier"], runtime="onnx") as onnx:
        python_onnx = onnx.logits(TEXTS)
    assert np.abs(np.asarray(page["logits"]) - python_onnx).max() <= FP32_GATE
    assert page["labels"] == [f"LABEL_{i}" for i in want.argmax(axis=1)]
    probabilities = np.asarray(page["probabilities"])
    assert np.allclose(probabilities.sum(axis=1), 1.0) and probabilities.argmax(axis=1).tolist() == want.argmax(1).tolist()


def test_page_embeddings_are_the_cls_vectors(exports, browser):
    page = browser["pages"]["encoder"]["result"]
    want = torch_outputs(exports["encoder"], TEXTS)["last_hidden_state"][:, 0]
    assert np.asarray(page["embeddings"]).shape == want.shape
    assert np.abs(np.asarray(page["embeddings"]) - want).max() <= FP32_GATE
    assert "logits" not in page


def test_page_is_cross_origin_isolated_and_shows_the_prediction(exports, browser):
    page = browser["pages"]["classifier"]
    assert page["info"]["crossOriginIsolated"] is True  # serve.py's COOP/COEP headers took effect
    want = torch_outputs(exports["classifier"], [SCREENSHOT_TEXT])["logits"][0]
    lines = page["shown"].splitlines()
    assert lines[0] == f"LABEL_{want.argmax()}"
    assert f"{100 * np.exp(want[0]) / np.exp(want).sum():.1f} %" in lines
    assert browser["screenshot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [line for line in page["console"] if line.startswith(("error", "pageerror", "http"))], page["console"]


@pytest.mark.shared_data
def test_page_tokenizes_nsmc_reviews_like_kobert(exports, browser):
    reviews = browser["reviews"]
    if not reviews:
        pytest.skip(f"{shared_data_dir()}/nsmc: no NSMC reviews")
    got = browser["pages"]["classifier"]["encoded"]
    want = our_ids(exports["classifier"], reviews)
    agree = sum(a == b for a, b in zip(got, want))
    assert agree == len(reviews), f"{agree}/{len(reviews)} reviews tokenized alike"


def run_in_node(tmp_path: Path, package_dir: Path, texts: list[str]) -> dict:
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"package_dir": str(package_dir), "texts": texts, "repeats": 3},
                                  ensure_ascii=False), encoding="utf-8")
    proc = subprocess.run(["node", str(WEB_DIR / "package_node_check.mjs"), str(request)], cwd=WEB_DIR,
                          env=clean_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_package_runs_in_node_with_onnxruntime_node(exports, tmp_path):
    got = run_in_node(tmp_path, exports["site"] / "classifier", TEXTS)
    assert got["result"]["input_ids"] == our_ids(exports["classifier"], TEXTS)
    want = torch_outputs(exports["classifier"], TEXTS)["logits"]
    assert np.abs(np.asarray(got["result"]["logits"]) - want).max() <= FP32_GATE
    got = run_in_node(tmp_path, exports["site"] / "encoder", TEXTS)
    want = torch_outputs(exports["encoder"], TEXTS)["last_hidden_state"][:, 0]
    assert np.abs(np.asarray(got["result"]["embeddings"]) - want).max() <= FP32_GATE


def test_package_files_and_settings(exports):
    package = exports["site"] / "classifier"
    settings = json.loads((package / "kobert-web.json").read_text())
    assert settings["max_length"] == SHORT_LIMIT and settings["special_ids"] == {"cls": 2, "sep": 3, "pad": 1}
    assert settings["labels"] == ["LABEL_0", "LABEL_1"] and settings["head"] == "sequence_classification"
    assert (package / "model" / "model.onnx").read_bytes() == (exports["classifier"] / "onnx" / "model.onnx").read_bytes()
    for path in ("index.html", "app.js", "kobert.js", "serve.py", "lib/ort/ort.wasm.min.mjs",
                 "lib/ort/ort-wasm-simd-threaded.wasm", "lib/transformers/transformers.min.js",
                 "model/tokenizer.json"):
        assert (package / path).is_file(), path
    assert json.loads((package / "model" / "tokenizer_config.json").read_text())["tokenizer_class"] == \
        "PreTrainedTokenizerFast"


def test_package_replaces_only_its_own_folders(exports, tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert kobert_cli(["package", "web", str(exports["classifier"]), "--out", str(foreign)]) == 2
    error = capsys.readouterr().err
    assert "is not a kobert web package" in error and len(error.strip().splitlines()) == 1
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    previous = tmp_path / "previous"
    assert kobert_cli(["package", "web", str(exports["classifier"]), "--out", str(previous)]) == 0
    (previous / "stale.txt").write_text("from an older build")
    assert kobert_cli(["package", "web", str(exports["encoder"]), "--out", str(previous)]) == 0
    assert not (previous / "stale.txt").exists()
    assert json.loads((previous / "kobert-web.json").read_text())["head"] == "none"


def test_package_checks_the_export(exports, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(exports["classifier"], broken)
    (broken / "onnx" / "model.onnx").write_bytes(b"not a model")
    assert kobert_cli(["package", "web", str(broken), "--out", str(tmp_path / "out")]) == 2
    assert "sha256 differs from the manifest" in capsys.readouterr().err
    manifest = json.loads((broken / "manifest.json").read_text())
    del manifest["artifacts"]["onnx"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    assert kobert_cli(["package", "web", str(broken), "--out", str(tmp_path / "out")]) == 2
    assert "no 'onnx' artifact (export with --to onnx)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
