"""The TF Serving shim as a server: hostile and careless requests, slow clients, and 64 clients at once.

One child process builds a toy SavedModel with the tf-text signatures' names, inputs and outputs
(`serving_default(text)`, `serving_pair(text, text_pair)`, `serving_ids(input_ids, ...)`; logits,
last_hidden_state and the ids; an embedding lookup that refuses ids past its 50 rows, as BERT's does)
beside a manifest naming its labels, then serves it with the shim's own `main()` on 127.0.0.1 (one
TensorFlow import for the whole file, no tensorflow-text, no BERT: what is tested is the server). The
process is stopped by its PID when the module ends, failed tests included. Replies from the real
tf-text export are tested in tests/test_tf_text.py.

Each test is one behaviour and fails on the shim before it became a server (PID-less threads, no cap,
no deadline, listen backlog 5). The load test's length: KOBERT_SHIM_LOAD_SECONDS (10; 30 for a report).
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("tensorflow") is None:
    pytest.skip("tensorflow not installed", allow_module_level=True)

HOST = "127.0.0.1"
WORKERS, READ_TIMEOUT_S, MAX_INSTANCES, MAX_HIDDEN, MAX_BODY = 4, 1.5, 8, 2, 65536
START_TIMEOUT_S = 600  # TensorFlow's import alone takes minutes on a loaded 2-core machine
PREDICT = "/v1/models/kobert:predict"
LABELS = {"0": "negative", "1": "positive"}

TOY_SERVER = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import tensorflow as tf

    VOCAB, HIDDEN, MAX = 50, 8, 16
    export = Path(sys.argv[1])

    class Toy(tf.Module):
        def __init__(self):
            self.embedding = tf.Variable(tf.random.stateless_normal([VOCAB, HIDDEN], seed=[1, 2]))
            self.classifier = tf.Variable(tf.random.stateless_normal([HIDDEN, 2], seed=[3, 4]))

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = tf.gather(self.embedding, input_ids)  # an id past the table: InvalidArgumentError
            mask = tf.cast(attention_mask, tf.float32)[..., None]
            pooled = tf.reduce_sum(hidden * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)
            return {"last_hidden_state": hidden, "logits": pooled @ self.classifier}

        def ids(self, parts):
            pieces = [tf.cast(tf.strings.unicode_decode(p, "UTF-8", errors="replace") % (VOCAB - 5) + 5,
                              tf.int64)[:, :MAX] for p in parts]
            ids = tf.concat(pieces, axis=1)
            types = tf.concat([tf.zeros_like(p) + i for i, p in enumerate(pieces)], axis=1)
            inputs = {"input_ids": ids.to_tensor(1), "attention_mask": tf.ones_like(ids).to_tensor(0),
                      "token_type_ids": types.to_tensor(0)}
            return {**self.forward(**inputs), **inputs}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve_text(self, text):
            return self.ids([text])

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                      tf.TensorSpec([None], tf.string, name="text_pair")])
        def serve_pair(self, text, text_pair):
            return self.ids([text, text_pair])

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64, name=n)
                                      for n in ("input_ids", "attention_mask", "token_type_ids")])
        def serve_ids(self, input_ids, attention_mask, token_type_ids):
            return self.forward(input_ids, attention_mask, token_type_ids)

    toy = Toy()
    tf.saved_model.save(toy, str(export / "tf-text"), signatures={
        "serving_default": toy.serve_text.get_concrete_function(),
        "serving_pair": toy.serve_pair.get_concrete_function(),
        "serving_ids": toy.serve_ids.get_concrete_function()})
    (export / "manifest.json").write_text(json.dumps({"config": {"id2label": LABELS}, "artifacts": {}}))
    from kobert.tf_serving_shim import main
    main([str(export / "tf-text"), "--port", "0", *sys.argv[2:]])
''').replace("LABELS", json.dumps(LABELS))


@dataclass
class Shim:
    pid: int
    port: int

    def threads(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"^Threads:\s+(\d+)", status, re.M)[1])

    def alive(self) -> bool:
        return Path(f"/proc/{self.pid}").exists()


def stop(process: subprocess.Popen) -> None:
    """By its PID: TERM, then KILL."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    export = tmp_path_factory.mktemp("toy-export")
    log = export / "shim.stderr"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    args = ["--workers", WORKERS, "--read-timeout-s", READ_TIMEOUT_S, "--max-instances", MAX_INSTANCES,
            "--max-hidden-instances", MAX_HIDDEN, "--max-body-bytes", MAX_BODY]
    with open(log, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-c", TOY_SERVER, str(export), *map(str, args)],
                                   stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)
    try:
        line = read_line(process, START_TIMEOUT_S)
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, f"the shim did not start: {line!r}\n{log.read_text(errors='replace')[-3000:]}"
        yield Shim(process.pid, int(match[1]))
    finally:
        stop(process)


def read_line(process: subprocess.Popen, timeout: float) -> str:
    got = []
    reader = threading.Thread(target=lambda: got.append(process.stdout.readline().decode()), daemon=True)
    reader.start()
    reader.join(timeout)
    return got[0] if got else ""


# --- clients ---------------------------------------------------------------------------------------


def request(shim: Shim, method: str, path: str, body=None, timeout: float = 60) -> tuple[int, dict, dict]:
    """(status, headers, JSON body) over http.client; `body` a dict (sent as JSON) or bytes."""
    connection = http.client.HTTPConnection(HOST, shim.port, timeout=timeout)
    try:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        connection.request(method, path, data, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read() or b"null")
    finally:
        connection.close()


def post(shim: Shim, body) -> tuple[int, dict]:
    status, _, reply = request(shim, "POST", PREDICT, body)
    return status, reply


def raw(shim: Shim, data: bytes, timeout: float = 30) -> tuple[int, bytes]:
    """Bytes as written, the reply read to the server's close: (status, body)."""
    with socket.create_connection((HOST, shim.port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_reply(sock)


def read_reply(sock: socket.socket) -> tuple[int, bytes]:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/"), f"no HTTP reply: {head[:200]!r}"
    return int(head.split()[1]), body


def headers(length: str | None = None, extra: str = "") -> bytes:
    line = f"Content-Length: {length}\r\n" if length is not None else ""
    return f"POST {PREDICT} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n{line}{extra}\r\n".encode()


# --- the request body -------------------------------------------------------------------------------


def test_body_over_the_cap_is_413_before_it_is_read(shim):
    """Was: `Content-Length: 10 GB` with a 12-byte body reserved 10.5 GB and waited for ever."""
    for length in (MAX_BODY + 1, 10 * 2**30, 100 * 2**30, "9" * 5000):
        start = time.monotonic()
        status, body = raw(shim, headers(str(length)) + b'{"instances"')
        assert status == 413 and "over this server's cap" in json.loads(body)["error"], (length, body)
        assert time.monotonic() - start < 20
    status, body = raw(shim, headers(str(MAX_BODY + 1)) + b"x" * (MAX_BODY + 1))  # sent whole: still 413
    assert status == 413


@pytest.mark.parametrize("length, extra, want", [
    ("abc", "", 400), ("-5", "", 400), ("5, 6", "", 400), ("1e3", "", 400),
    (None, "", 411), (None, "Transfer-Encoding: chunked\r\n", 411),
])
def test_bad_content_length_gets_a_reply(shim, length, extra, want):
    """Was: `Content-Length: abc` killed the handler thread with no reply."""
    status, body = raw(shim, headers(length, extra) + b'{"instances": ["a"]}')
    assert status == want and json.loads(body)["error"]


def test_body_shorter_than_its_length_is_400(shim):
    with socket.create_connection((HOST, shim.port), timeout=30) as sock:
        sock.sendall(headers("100") + b'{"instances": ["a"]}')
        sock.shutdown(socket.SHUT_WR)
        status, body = read_reply(sock)
    assert status == 400 and "ended after 20 of its 100 bytes" in json.loads(body)["error"]


# --- slow clients and the worker pool ------------------------------------------------------------------


def test_slow_client_gets_408(shim):
    """Was: a client that stops sending held a thread for ever (a body 10 bytes short; a request line
    sent a byte at a time, every 0.3 s, which no per-read timeout would catch)."""
    start = time.monotonic()
    with socket.create_connection((HOST, shim.port), timeout=30) as sock:
        sock.sendall(headers("50") + b'{"instances"')
        status, body = read_reply(sock)
    assert status == 408 and "not received within 1.5 s" in json.loads(body)["error"]
    assert time.monotonic() - start < 15

    start = time.monotonic()
    with socket.create_connection((HOST, shim.port), timeout=30) as sock:
        for byte in headers("2") + b"{}":
            if select.select([sock], [], [], 0)[0]:  # the server has answered
                break
            sock.sendall(bytes([byte]))
            time.sleep(0.3)
        status, _ = read_reply(sock)
    assert status == 408 and time.monotonic() - start < 15  # the drip alone would take 40 s


def test_worker_threads_are_bounded_and_the_backlog_queues(shim):
    """Was: one thread per connection (12 idle clients: 12 threads) and a listen backlog of 5. Now 4
    workers answer; the other connections wait in the kernel's queue and are each answered in turn."""
    assert post(shim, {"instances": ["먼저"]})[0] == 200  # TensorFlow's own thread pools exist from here on
    before = shim.threads()
    holders = [socket.create_connection((HOST, shim.port), timeout=60) for _ in range(3 * WORKERS)]
    for sock in holders:
        sock.sendall(headers("50"))  # and nothing more
    time.sleep(1.0)
    assert shim.threads() <= before + WORKERS
    replies = []
    clients = [threading.Thread(target=lambda: replies.append(post(shim, {"instances": ["좋아요"]})[0]))
               for _ in range(2 * WORKERS)]
    for client in clients:
        client.start()
    held = [read_reply(sock)[0] for sock in holders]
    for client in clients:
        client.join(120)
    for sock in holders:
        sock.close()
    assert held == [408] * len(holders) and replies == [200] * len(clients)
    assert shim.threads() <= before + WORKERS


# --- methods, shapes and fields --------------------------------------------------------------------------


def test_wrong_methods_get_405(shim):
    """Was: GET on :predict got an empty reply; PUT an HTML 501."""
    for method, path, allowed in [("GET", PREDICT, "POST"), ("PUT", PREDICT, "POST"), ("DELETE", PREDICT, "POST"),
                                  ("POST", "/v1/models/kobert", "GET"), ("PUT", "/v1/models/kobert", "GET")]:
        status, reply_headers, body = request(shim, method, path, {} if method != "GET" else None)
        assert (status, reply_headers.get("Allow")) == (405, allowed) and "not allowed" in body["error"], method
    assert request(shim, "GET", "/v1/models/kobert")[0] == 200
    assert request(shim, "GET", "/v1/models/other:predict")[0] == 404


@pytest.mark.parametrize("body, words", [
    ({"instances": [["a", "b"], ["c", "d"]]}, "instance 0: text takes one string"),
    ({"instances": ["a", 7]}, "instance 1: text takes one string"),
    ({"instances": [{"text": ["a", "b"]}]}, "instance 0: text takes one string"),
    ({"inputs": {"text": [["a", "b"]]}}, '"inputs": text takes 1-level nested lists'),
    ({"signature_name": "serving_ids", "instances": [{"input_ids": [[2, 3]], "attention_mask": [1, 1],
                                                     "token_type_ids": [0, 0]}]}, "input_ids takes 1-level"),
    ({"signature_name": "serving_ids", "inputs": {"input_ids": [[2, 3], [4]], "attention_mask": [[1, 1], [1]],
                                                  "token_type_ids": [[0, 0], [0]]}}, "lists of different lengths"),
    ({"signature_name": "serving_ids", "instances": [{"input_ids": [2, True], "attention_mask": [1, 1],
                                                     "token_type_ids": [0, 0]}]}, "got a boolean"),
])
def test_instances_are_predictions(shim, body, words):
    """Was: {"instances": [["a","b"],["c","d"]]} returned 4 predictions for 2 instances."""
    status, reply = post(shim, body)
    assert status == 400 and words in reply["error"], reply


def test_instances_per_request_are_capped(shim):
    status, reply = post(shim, {"instances": ["가"] * (MAX_INSTANCES + 1)})
    assert status == 400 and f"at most {MAX_INSTANCES} per request" in reply["error"]
    status, reply = post(shim, {"instances": ["가"] * MAX_INSTANCES})
    assert status == 200 and len(reply["predictions"]) == MAX_INSTANCES
    status, reply = post(shim, {"instances": ["가"] * (MAX_HIDDEN + 1), "output_filter": ["last_hidden_state"]})
    assert status == 400 and f"at most {MAX_HIDDEN} per request that asks for hidden states" in reply["error"]


@pytest.mark.parametrize("body, words", [
    (json.dumps({"signature_name": ["serving_default"], "instances": ["a"]}).encode(), "signature_name must be a string"),
    (b"[" * 30000 + b"]" * 30000, "nests JSON deeper"),
    (b'{"instances": ["\xff"]}', "not JSON"),
    (b'{"instances": ', "not JSON"),
    (b'["a"]', "must be a JSON object"),
    (json.dumps({"instances": ["a"], "output_filter": "logits"}).encode(), "must be a non-empty list"),
    (json.dumps({"instances": ["a"], "output_filter": ["nope"]}).encode(), "no output 'nope'"),
    (json.dumps({"instances": "a"}).encode(), "must be a non-empty list"),
])
def test_malformed_fields_get_400_and_the_server_lives(shim, body, words):
    """Was: a list-valued signature_name or 100k-deep JSON killed the handler thread with no reply."""
    status, reply = post(shim, body)
    assert status == 400 and words in reply["error"], reply
    assert shim.alive() and post(shim, {"instances": ["a"]})[0] == 200


def test_the_400_carries_tensorflows_own_message(shim):
    """Was: an id past the embedding table said only "Graph execution error:"."""
    status, reply = post(shim, {"signature_name": "serving_ids",
                                "instances": [{"input_ids": [2, 99], "attention_mask": [1, 1], "token_type_ids": [0, 0]}]})
    assert status == 400
    assert "indices[0,1] = 99 is not in [0, 50)" in reply["error"] and "Gather" in reply["error"], reply
    assert "Graph execution error" not in reply["error"]


# --- what a reply carries ---------------------------------------------------------------------------------


def test_replies_carry_the_classification_and_hidden_states_only_when_asked(shim):
    """Was: every reply carried every token's hidden state (1,000 texts: a 344 MB reply)."""
    texts = ["정말 재밌어요", "별로였다"]
    status, reply = post(shim, {"instances": texts})
    assert status == 200 and len(reply["predictions"]) == 2
    for row in reply["predictions"]:
        assert set(row) == {"logits", "probabilities", "label", "input_ids", "attention_mask", "token_type_ids"}
        assert np.isclose(sum(row["probabilities"]), 1, atol=1e-6)
        assert row["label"] == LABELS[str(int(np.argmax(row["logits"])))]
        assert int(np.argmax(row["probabilities"])) == int(np.argmax(row["logits"]))

    status, columns = post(shim, {"inputs": {"text": texts}})
    assert status == 200 and set(columns["outputs"]) == set(reply["predictions"][0])
    np.testing.assert_allclose(columns["outputs"]["logits"], [row["logits"] for row in reply["predictions"]])

    status, hidden = post(shim, {"instances": texts, "output_filter": ["last_hidden_state", "label"]})
    assert status == 200 and [set(row) for row in hidden["predictions"]] == [{"last_hidden_state", "label"}] * 2
    assert np.asarray(hidden["predictions"][0]["last_hidden_state"]).shape == (len(texts[0]), 8)

    status, pair = post(shim, {"signature_name": "serving_pair", "instances": [{"text": "가", "text_pair": "나다"}]})
    assert status == 200 and pair["predictions"][0]["token_type_ids"] == [0, 1, 1]
    assert "last_hidden_state" not in pair["predictions"][0]


# --- load ------------------------------------------------------------------------------------------------


def test_64_clients_no_resets(shim):
    """Was (listen backlog 5): 64 clients for 20 s, 90 connection resets. Each client posts one text per
    new connection until the time is up; every request must get 200 and none a reset."""
    seconds = float(os.environ.get("KOBERT_SHIM_LOAD_SECONDS", "10"))
    deadline = time.monotonic() + seconds
    latencies, statuses, resets, errors = [], [], [], []

    def client(i: int) -> None:
        while time.monotonic() < deadline:
            start = time.monotonic()
            try:
                statuses.append(post(shim, {"instances": [f"리뷰 {i}: 배우들의 연기가 훌륭했다"]})[0])
                latencies.append(time.monotonic() - start)
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as e:
                resets.append(repr(e))
            except OSError as e:
                errors.append(repr(e))

    clients = [threading.Thread(target=client, args=(i,)) for i in range(64)]
    start = time.monotonic()
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(seconds + 120)
    wall = time.monotonic() - start
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) if latencies else (float("nan"),) * 3
    print(f"\nshim load: 64 clients, {seconds:g} s, {WORKERS} workers: {len(latencies)} requests in {wall:.1f} s "
          f"({len(latencies) / wall:.1f}/s), p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms; {len(resets)} resets, {len(errors)} other errors; load average "
          f"{os.getloadavg()[0]:.1f}")
    assert not resets and not errors, (resets[:3], errors[:3])
    assert latencies and set(statuses) == {200}
