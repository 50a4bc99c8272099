"""`kobert package mms`: the .mar served by a real Multi Model Server, against the torch reference.

One export of the shipped default (a 2-label sentiment classifier, tokenizer
max length 64) and one of a tiny bare encoder; both archives are served by one
MMS 1.1.11 on 127.0.0.1 (its own TMPDIR, free ports < 32768), started from the
MXNet venv, whose Python has no kobert, transformers or torch. The replies are
compared with `kobert.runtimes.load(dir, runtime="torch")` (fp32 gate 1e-4);
the server is stopped by its process group in a `finally`, and nothing of it
may survive.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kobert.cli import main as kobert_main
from kobert.exporters import mms
from kobert.exporters.mms_server import LocalModelServer, mms_launcher
from kobert.mxnet_env import find_mxnet_python

REPO = Path(__file__).resolve().parents[1]
ATOL = 1e-4  # the fp32 gate: MXNet and torch differ only in summation order (~1e-6)
TEXTS = [
    "이 영화 정말 재미있어요! 배우들 연기가 최고 ㅋㅋㅋ",
    "최악이다... 시간 아깝다 ㅠㅠ",
    "",
    "그냥 그랬어요 😀 BERT 2019",
    # Longer than the default tokenizer's 64 tokens: truncated by the same rule on both sides.
    " ".join(["스토리가 너무 지루하고 결말도 허무했지만 음악은 좋았다"] * 12),
]
# The standard library (itertools: the padding function kobert.encoding lends the handler), numpy, mxnet, tokenizers.
HANDLER_IMPORTS = {"itertools", "json", "logging", "os", "numpy", "mxnet", "tokenizers"}



def _model_archiver_missing() -> str | None:
    """Why `kobert package mms` cannot run here, or None."""
    python = find_mxnet_python()
    if python is None:
        return "no MXNet interpreter (run `bash ci/setup.sh` or set KOBERT_MXNET_PYTHON)"
    if subprocess.run([python, "-s", "-c", "import model_archiver"], capture_output=True).returncode:
        return f"no model-archiver for {python} (run `bash ci/setup.sh`)"
    return None


_CANNOT_PACKAGE = _model_archiver_missing()
pytestmark = pytest.mark.skipif(_CANNOT_PACKAGE is not None, reason=str(_CANNOT_PACKAGE))
torch = pytest.importorskip("torch")


def needs_mms():
    """Skip (one line) when Java or the MMS launcher is missing."""
    java_home = os.environ.get("JAVA_HOME")  # the MMS launcher prefers $JAVA_HOME/bin/java
    if not (java_home and Path(java_home, "bin", "java").is_file()) and shutil.which("java") is None:
        pytest.skip("no java (MMS needs Java 17: apt-get install openjdk-17-jre-headless)")
    if mms_launcher() is None:
        pytest.skip("no multi-model-server beside the MXNet python (run `bash ci/setup.sh`)")


def kobert(*args: str) -> int:
    return kobert_main([str(a) for a in args])


# --- exports and archives ------------------------------------------------------------------


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("mms-exports")
    assert kobert("export", "default", "--to", "mxnet", "--out", root / "sentiment", "--quiet") == 0
    assert kobert("init", "--preset", "tiny", "--out", root / "tiny-ck", "--seed", "3") == 0
    assert kobert("export", root / "tiny-ck", "--to", "mxnet", "--tokenizer", REPO / "kobert/assets/tokenizer",
                  "--out", root / "encoder", "--quiet") == 0
    return {"sentiment": root / "sentiment", "encoder": root / "encoder"}


@pytest.fixture(scope="module")
def store(exports, tmp_path_factory):
    """The model store: sentiment.mar (packaged for batch size 4) and encoder.mar (for 2, served with 1)."""
    store = tmp_path_factory.mktemp("mms-store")
    assert kobert("package", "mms", exports["sentiment"], "--out", store / "sentiment.mar", "--batch-size", "4") == 0
    assert kobert("package", "mms", exports["encoder"], "--out", store / "encoder.mar", "--batch-size", "2") == 0
    return store


@pytest.fixture(scope="module")
def references(exports):
    from kobert.runtimes import load

    opened = {name: load(path, runtime="torch") for name, path in exports.items()}
    yield opened
    for runtime in opened.values():
        runtime.close()


def test_archive_holds_the_model_a_handler_and_its_spec(store, exports):
    with zipfile.ZipFile(store / "sentiment.mar") as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
        handler = archive.read(f"{mms.HANDLER_MODULE}.py").decode("utf-8")
    assert names == {"MAR-INF/MANIFEST.json", "kobert-symbol.json", "kobert-0000.params", "tokenizer.json",
                     mms.SPEC_FILE, f"{mms.HANDLER_MODULE}.py"}
    # "python": the interpreter MMS runs in; "python3" would be whatever is first on PATH.
    assert manifest["runtime"] == "python"
    assert manifest["model"] == {"modelName": "sentiment", "handler": mms.HANDLER_ENTRY}
    spec = mms.packaged_spec(store / "sentiment.mar")
    exported = json.loads((exports["sentiment"] / "manifest.json").read_text())
    assert spec["batch_size"] == 4
    assert spec["labels"] == ["negative", "positive"]
    assert spec["inputs"] == exported["artifacts"]["mxnet"]["inputs"]
    assert spec["outputs"] == exported["artifacts"]["mxnet"]["outputs"]
    assert spec["max_length"] == 64 and spec["pad_id"] == 1  # the shipped tokenizer's model_max_length, [PAD]
    assert mms.packaged_spec(store / "encoder.mar")["max_length"] == 512
    imported = set()
    for node in ast.walk(ast.parse(handler)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= HANDLER_IMPORTS, f"the handler imports {imported - HANDLER_IMPORTS}"


# --- refusals: one clear line, exit 2 ---------------------------------------------------------


def _edited_copy(export: Path, target: Path, edit) -> Path:
    shutil.copytree(export, target)
    manifest = json.loads((target / "manifest.json").read_text())
    edit(manifest)
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


@pytest.mark.parametrize("case, expected", [
    ("no-mxnet", "no 'mxnet' artifact to package"),
    ("no-tokenizer", "this export has no tokenizer"),
    ("out-is-dir", "is a directory"),
    ("out-not-mar", "expected a file name ending in .mar"),
    ("bad-name", "becomes the MMS model name"),
    ("not-an-export", "no manifest.json"),
])
def test_refusals_are_one_line(case, expected, exports, tmp_path, capsys):
    source, out = exports["sentiment"], tmp_path / "model.mar"
    if case == "no-mxnet":
        source = _edited_copy(source, tmp_path / "x", lambda m: m["artifacts"].pop("mxnet"))
    elif case == "no-tokenizer":
        source = _edited_copy(source, tmp_path / "x", lambda m: m.pop("tokenizer"))
    elif case == "out-is-dir":
        out = tmp_path / "dir.mar"
        out.mkdir()
    elif case == "out-not-mar":
        out = tmp_path / "model.zip"
    elif case == "bad-name":
        out = tmp_path / "감성 분석.mar"
    elif case == "not-an-export":
        source = tmp_path
    capsys.readouterr()
    assert kobert("package", "mms", source, "--out", out) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("kobert package: error: ") and expected in error and "\n" not in error, error
    assert not out.is_file()


def test_a_failed_build_keeps_the_earlier_archive(exports, tmp_path, capsys):
    out = tmp_path / "sentiment.mar"
    assert kobert("package", "mms", exports["sentiment"], "--out", out) == 0
    before = out.read_bytes()
    assert kobert("package", "mms", exports["sentiment"], "--out", out, "--batch-size", "2") == 0  # replaced
    assert mms.packaged_spec(out)["batch_size"] == 2
    tampered = shutil.copytree(exports["sentiment"], tmp_path / "tampered")
    with open(tampered / "mxnet" / "kobert-0000.params", "r+b") as params:
        params.seek(-4, 2)
        params.write(b"\0\0\0\0")
    capsys.readouterr()
    assert kobert("package", "mms", tampered, "--out", out) == 2
    assert "sha256 differs" in capsys.readouterr().err
    assert mms.packaged_spec(out)["batch_size"] == 2 and out.read_bytes() != before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


# --- the live server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(request, tmp_path_factory):
    needs_mms()  # before exporting anything
    store = request.getfixturevalue("store")
    mms_server = LocalModelServer(mms_launcher(), store, tmp_path_factory.mktemp("mms-run"))
    try:
        # encoder: the startup path (`--models`, batch size 1); sentiment: registered with its packaged batch size.
        mms_server.start(models=("encoder=encoder.mar",))
        mms_server.wait_ready("encoder")
        mms_server.register("sentiment.mar", "sentiment", batch_size=mms.packaged_spec(store / "sentiment.mar")["batch_size"],
                            max_batch_delay_ms=300)
        yield mms_server
    finally:
        mms_server.stop()
        assert mms_server.leftover_pids() == [], "MMS processes survived stop()"


def _check_classification(reply: dict, torch_logits: np.ndarray, labels: list[str]) -> None:
    assert set(reply) == {"logits", "label", "probabilities"}
    logits = np.asarray(reply["logits"], dtype=np.float32)
    np.testing.assert_allclose(logits, torch_logits, rtol=0, atol=ATOL)
    assert reply["label"] == labels[int(np.argmax(torch_logits))]
    softmax = np.exp(torch_logits - torch_logits.max()) / np.exp(torch_logits - torch_logits.max()).sum()
    np.testing.assert_allclose(reply["probabilities"], softmax, rtol=0, atol=ATOL)


def test_single_and_batch_requests_match_torch(server, references):
    reference = references["sentiment"]
    torch_logits = reference.logits(TEXTS)
    labels = [reference.config.id2label[i] for i in range(reference.config.num_labels)]
    status, reply = server.predict("sentiment", {"text": TEXTS[0]})
    assert status == 200, reply
    _check_classification(reply, torch_logits[0], labels)
    status, replies = server.predict("sentiment", {"texts": TEXTS})
    assert status == 200 and isinstance(replies, list) and len(replies) == len(TEXTS), replies
    for reply, expected in zip(replies, torch_logits):
        _check_classification(reply, expected, labels)
    assert server.predict("sentiment", {"texts": []}) == (200, [])


def test_concurrent_requests_are_batched_and_answered_in_order(server, references):
    """Four clients at once: MMS hands the worker one batch; each client gets its own text's answer."""
    reference = references["sentiment"]
    torch_logits = reference.logits(TEXTS[:4])
    labels = [reference.config.id2label[i] for i in range(reference.config.num_labels)]
    payloads = [{"text": TEXTS[0]}, {"texts": TEXTS[1:3]}, {"nope": 1}, {"text": TEXTS[3]}]
    replies: list = [None] * len(payloads)
    barrier = threading.Barrier(len(payloads))

    def client(i):
        barrier.wait()
        replies[i] = server.predict("sentiment", payloads[i])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert replies[0][0] == 200 and replies[1][0] == 200 and replies[3][0] == 200, replies
    _check_classification(replies[0][1], torch_logits[0], labels)
    for reply, expected in zip(replies[1][1], torch_logits[1:3]):
        _check_classification(reply, expected, labels)
    _check_classification(replies[3][1], torch_logits[3], labels)
    # The bad request in the same batch gets its own 400 and does not fail the others.
    assert replies[2][0] == 400 and "expected a JSON body" in replies[2][1]["error"]
    batches = [int(line.split("batch of ")[1].split()[0]) for line in server.worker_log().splitlines()
               if "kobert: batch of" in line]
    assert max(batches) > 1, f"MMS never handed the worker more than one request: {batches}"


@pytest.mark.parametrize("payload, message", [
    ({"nope": 1}, "expected a JSON body"),
    ({"texts": ["좋아요", 3]}, "texts[1]: expected a string, got int"),
    ("just a string", "expected a JSON body"),
])
def test_bad_requests_get_400_with_a_reason(server, payload, message):
    status, reply = server.predict("sentiment", payload)
    assert status == 400 and message in reply["error"], (status, reply)


def test_bare_encoder_answers_the_cls_embedding(server, references):
    expected = references["encoder"].embed(TEXTS, pooling="cls")
    status, replies = server.predict("encoder", {"texts": TEXTS})
    assert status == 200, replies
    assert all(set(r) == {"embedding", "pooling"} and r["pooling"] == "cls" for r in replies)
    np.testing.assert_allclose(np.asarray([r["embedding"] for r in replies], np.float32), expected, rtol=0, atol=ATOL)
    status, reply = server.predict("encoder", {"text": TEXTS[1]})
    assert status == 200
    np.testing.assert_allclose(np.asarray(reply["embedding"], np.float32), expected[1], rtol=0, atol=ATOL)
    # Loaded at startup, so with batch size 1 although packaged for 2: the worker says how to register it.
    assert "packaged for batch_size=2 but registered with batch_size=1" in server.worker_log()


def test_the_server_keeps_its_pid_file_in_its_own_tmpdir(server):
    pid_file = server.tmpdir / ".model_server.pid"
    assert pid_file.is_file() and int(pid_file.read_text()) in server.group_pids()
    described = server.describe("sentiment")
    assert described["batchSize"] == 4 and described["runtime"] == "python"
