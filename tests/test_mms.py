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
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kobert.cli import main as kobert_main
from kobert.exporters import mms
from kobert.exporters.mms_server import LocalModelServer, http, mms_launcher
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
    # Beside the archive, the server's configuration: MMS must hand the handler the body's bytes.
    config = mms.config_path(store / "sentiment.mar").read_text()
    assert "decode_input_request=false" in config.splitlines() and f"model_store={store.resolve()}" in config
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
    capsys.readouterr()
    assert kobert("package", "mms", exports["sentiment"], "--out", out) == 0
    assert f"server configuration to {tmp_path / 'sentiment.properties'}" in capsys.readouterr().out
    assert "decode_input_request=false" in (tmp_path / "sentiment.properties").read_text()
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
    batches = _batch_sizes(server)
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


# --- hostile input: a bad request never costs a good one its answer --------------------------

# (body, Content-Type, status, a piece of the error). Each of the first three killed the worker before
# config.properties said decode_input_request=false (MMS's Python side parsed the body first).
MALFORMED = [
    (b'{"text": "\xec\xa2\x8b', "application/json", 400, "not JSON"),
    (b"\xff\xfe{\"text\": \"x\"}", "application/json", 400, "not UTF-8"),
    (b"\xff\xfe", "text/plain", 400, "not UTF-8"),
    (b'{"text": "\\ud800x"}', "application/json", 400, "lone surrogate U+D800"),
    (b'{"texts": ["ok", "\\udfff"]}', "application/json", 400, "texts[1]: a lone surrogate"),
    (b'{"text": 5}', "application/json", 400, "text: expected a string, got int"),
    (b'{"texts": "abc"}', "application/json", 400, "texts: expected a list"),
    (b"null", "application/json", 400, "expected a JSON body"),
    (b"[" * 100_000, "application/json", 400, "nested too deeply"),
    (json.dumps({"text": "가" * (mms.MAX_TEXT_CHARS + 1)}).encode(), "application/json", 413, "characters"),
    (json.dumps({"texts": [""] * (mms.MAX_TEXTS_PER_REQUEST + 1)}).encode(), "application/json", 413, "texts"),
    (b'{"text": "' + b"a" * mms.MAX_BODY_BYTES + b'"}', "application/json", 413, "bytes"),
]


def _handler_namespace() -> dict:
    """The generated handler's module namespace (it imports mxnet only when its service starts)."""
    namespace = {"__name__": mms.HANDLER_MODULE}
    exec(compile(mms.handler_source({}), f"{mms.HANDLER_MODULE}.py", "exec"), namespace)
    return namespace


class _Context:
    """What the handler uses of MMS's Context: request ids, per-request status (and no headers)."""

    def __init__(self):
        self.status = {}

    def get_request_id(self, idx=0):
        return "%036d" % idx

    def set_response_status(self, code=200, phrase="", idx=0):
        self.status[idx] = (code, phrase)

    def get_response_status(self, idx):
        return self.status.get(idx, (200, None))


@pytest.mark.parametrize("body, content_type, status, message", MALFORMED, ids=range(len(MALFORMED)))
def test_the_handler_answers_each_malformed_body_alone(body, content_type, status, message):
    handler = _handler_namespace()
    service = object.__new__(handler["KobertService"])
    service.spec = {"max_body_bytes": mms.MAX_BODY_BYTES, "max_texts_per_request": mms.MAX_TEXTS_PER_REQUEST,
                    "max_text_chars": mms.MAX_TEXT_CHARS, "max_length": 64}
    service.predict = lambda texts: [{"logits": [float(len(t))]} for t in texts]
    context = _Context()
    replies = service.handle([{"body": b'{"text": "abc"}'}, {"body": body}, {"body": b'{"texts": ["a", ""]}'}], context)
    assert all(isinstance(r, bytes) for r in replies)  # MMS sends bytes as they are
    assert json.loads(replies[0]) == {"logits": [3.0]} and json.loads(replies[2]) == [{"logits": [1.0]}, {"logits": [0.0]}]
    assert context.status == {1: (status, handler["REASONS"][status])}
    assert message in json.loads(replies[1])["error"]


def test_each_status_code_in_the_reply_frame_is_clear_of_a_read_boundary():
    """MMS's own create_predict_response builds the frame; every reply's status code starts at 6 mod 16."""
    script = f"""
import json, struct, sys
from mms.context import Context, RequestProcessor
from mms.protocol.otf_message_handler import create_predict_response
handler = {{"__name__": "h"}}
exec(sys.stdin.read(), handler)
service = object.__new__(handler["KobertService"])
service.spec = {{"max_body_bytes": 1000, "max_texts_per_request": 8, "max_text_chars": 100, "max_length": 8}}
service.predict = lambda texts: [{{"logits": [0.1 * len(t), -1.0 / 3]}} for t in texts]
bodies = [b'{{"text": "a"}}', b'{{"nope": 1}}', b'{{"texts": ["ab", "c"]}}', b"\\xff", b'{{"text": "abcdef"}}']
ids = {{i: "%08d-aaaa-bbbb-cccc-%012d" % (i, i) for i in range(len(bodies))}}
context = Context("m", ".", {{}}, len(bodies), None, "1.1.11")
context.request_ids, context.request_processor = ids, [RequestProcessor({{}}) for _ in bodies]
replies = service.handle([{{"body": b}} for b in bodies], context)
frame = bytes(create_predict_response(replies, ids, "Prediction success", 200, context))
at, found = 4, []
at += 4 + struct.unpack_from("!i", frame, at)[0]
for _ in bodies:
    for field in ("id", "content type"):
        at += 4 + struct.unpack_from("!i", frame, at)[0]
    found.append([at, struct.unpack_from("!i", frame, at)[0]])
    at += 4
    at += 4 + struct.unpack_from("!i", frame, at)[0]
    assert struct.unpack_from("!i", frame, at)[0] == 0, "a response header"
    at += 4
    length = struct.unpack_from("!i", frame, at)[0]
    found[-1].append(json.loads(frame[at + 4:at + 4 + length]))
    at += 4 + length
print(json.dumps(found))
"""
    proc = subprocess.run([find_mxnet_python(), "-s", "-c", script], input=mms.handler_source({}), text=True,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout)
    assert [status for _, status, _ in found] == [200, 400, 200, 400, 200]
    assert all(offset % 16 == 6 for offset, _, _ in found), found
    assert found[2][2] == [{"logits": [0.2, -1.0 / 3]}, {"logits": [0.1, -1.0 / 3]}]


def test_a_failing_forward_pass_costs_only_its_own_request():
    """If the batch's one forward pass fails, each request is answered alone: only the culprit gets 500."""
    handler = _handler_namespace()
    service = object.__new__(handler["KobertService"])
    service.spec = {"max_body_bytes": 100, "max_texts_per_request": 4, "max_text_chars": 10, "max_length": 8}

    def predict(texts):
        if "boom" in texts:
            raise RuntimeError("the model broke")
        return [{"n": len(t)} for t in texts]

    service.predict = predict
    context = _Context()
    replies = service.handle([{"body": b'{"text": "ab"}'}, {"body": b'{"text": "boom"}'}], context)
    assert json.loads(replies[0]) == {"n": 2}
    assert context.status == {1: (500, "Internal Server Error")} and "RuntimeError" in json.loads(replies[1])["error"]


FLOOD_SECONDS = 20
FLOOD_CLIENTS = 6


def test_a_flood_of_bad_requests_costs_no_good_request_and_no_worker(server, references):
    """Six clients for 20 s, every other request malformed, at batch size 4: every good request gets 200
    and the right logits, every bad one its own 4xx, and the worker is the same process at the end."""
    reference = references["sentiment"]
    torch_logits = reference.logits(TEXTS)
    labels = [reference.config.id2label[i] for i in range(reference.config.num_labels)]
    workers_before = server.worker_pids("sentiment")
    described_before = server.describe("sentiment")["workers"]
    assert len(workers_before) == 1, (workers_before, described_before)
    batches_before = len(_batch_sizes(server))
    url = f"{server.inference_url}/predictions/sentiment"
    good = [(json.dumps({"text": TEXTS[i]}, ensure_ascii=False).encode(), [i]) for i in range(len(TEXTS))]
    good.append((json.dumps({"texts": TEXTS[1:4]}, ensure_ascii=False).encode(), [1, 2, 3]))
    results: list[tuple] = []
    deadline = time.monotonic() + FLOOD_SECONDS

    def client(k):
        n = k
        while time.monotonic() < deadline:
            if n % 2:
                body, content_type, status, message = MALFORMED[n // 2 % len(MALFORMED)]
                results.append(("bad", status, message, http("POST", url, body, 60, content_type)))
            else:
                body, indices = good[n // 2 % len(good)]
                results.append(("good", indices, body, http("POST", url, body, 60)))
            n += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(FLOOD_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=FLOOD_SECONDS + 120)
    assert not any(t.is_alive() for t in threads), "a client never got its reply"

    results, frontend_drops = _without_frontend_drops(server, results)
    goods = [r for r in results if r[0] == "good"]
    bads = [r for r in results if r[0] == "bad"]
    assert len(goods) >= FLOOD_CLIENTS and len(bads) >= FLOOD_CLIENTS, (len(goods), len(bads))
    failed = [(body[:60], status, reply[:200]) for _, _, body, (status, reply) in goods if status != 200]
    assert not failed, f"{len(failed)} of {len(goods)} good requests failed: {failed[:5]}"
    for _, indices, body, (_, reply) in goods:
        answer = json.loads(reply)
        for row, i in zip(answer if isinstance(answer, list) else [answer], indices):
            _check_classification(row, torch_logits[i], labels)
    for _, status, message, (got, reply) in bads:
        assert got == status and message in json.loads(reply)["error"], (status, message, got, reply[:200])
    if not frontend_drops:
        assert server.worker_pids("sentiment") == workers_before, "the worker was restarted"
        assert server.describe("sentiment")["workers"] == described_before
    batches = _batch_sizes(server)[batches_before:]
    assert max(batches, default=0) > 1, f"no batch had batch-mates: {batches[:20]}"


# MMS 1.1.11's frontend sometimes drops a worker's well-formed reply frame ("Invalid message size" in its
# log: it decodes the frame without checking that each field has arrived; kobert.exporters.mms.aligned
# makes it rare, not impossible, under load). Such a batch gets "Worker died." whatever it held. Those
# replies are set aside, at most 1 % of all, and only when the frontend logged that error: a worker that
# dies of a bad request (the defect this test guards against) leaves no such line and still fails here.
FRONTEND_DROP = "Invalid message size"


def _without_frontend_drops(server, results: list[tuple]) -> tuple[list[tuple], int]:
    died = [r for r in results if r[-1][0] == 500 and b"Worker died" in r[-1][1]]
    if not died:
        return results, 0
    drops = server.worker_log().count(FRONTEND_DROP)
    assert drops, f"{len(died)} replies were 'Worker died.' without the frontend's {FRONTEND_DROP!r}"
    assert len(died) <= max(1, len(results) // 100), f"{len(died)} of {len(results)} replies lost to worker deaths"
    return [r for r in results if r not in died], drops


def _batch_sizes(server) -> list[int]:
    """How many requests each batch the worker logged held, in order."""
    return [int(line.split("batch of ")[1].split()[0]) for line in server.worker_log().splitlines()
            if "kobert: batch of" in line]
