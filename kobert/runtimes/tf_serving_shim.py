"""A loopback stand-in for TensorFlow Serving's REST predict API, around one SavedModel.

TensorFlow Serving's `tensorflow_model_server` cannot be installed on kobert's
machines: no package registry they reach carries it (PyPI has only the client,
`tensorflow-serving-api`; Debian has none; it ships as a Docker image and from
Google's own apt repository). So kobert tests the request and response shapes
TF Serving documents with this shim: it loads the SavedModel with plain
TensorFlow and answers on 127.0.0.1 the way TF Serving answers, so what works
here is what to send to a real server serving the same folder (TF Serving
wants `<model_base_path>/<version>/saved_model.pb`: copy `EXPORT/tf-text` to
`models/kobert/1` and pass `--model_base_path=$PWD/models/kobert --model_name=kobert`).

    POST /v1/models/<name>[/versions/<v>]:predict
      row format:   {"instances": ["한국어 문장", ...]}                 (one-input signature)
                    {"instances": [{"text": "..."}, ...]}
                    {"signature_name": "serving_pair", "instances": [{"text": "...", "text_pair": "..."}]}
      -> {"predictions": [{"logits": [...], "probabilities": [...], "label": "...", "input_ids": [...], ...}, ...]}
         one object per instance
      columnar:     {"inputs": {"text": ["...", ...]}}  or  {"inputs": ["...", ...]}
      -> {"outputs": {"logits": [[...], ...], ...}}
      "output_filter": ["last_hidden_state", ...]   which outputs to return (gRPC PredictRequest's field)
    GET  /v1/models/<name>  -> the model's version status
    errors: HTTP 400 (bad request), 404 (unknown model), 405 (wrong method), 408 (body not sent in
    time), 411 (no Content-Length), 413 (body over the cap); body {"error": "..."}

What a reply carries: every output of the signature except the per-token hidden
states (`last_hidden_state`: 64 x 768 floats per text), plus, where the signature
returns one `logits` row per instance, the softmax `probabilities` and the top
`label` (its name from the export's `config.json`, else `LABEL_<i>`), computed here.
`output_filter` picks outputs by name, the hidden states included. A real TF
Serving returns every output of the signature and nothing computed: the two
computed outputs and `output_filter` are the shim's (TF Serving's REST API has
no output filter; its gRPC PredictRequest has).

A server, not a toy: a request body over `max_body_bytes` gets 413 before it is
read; the request line, headers and body must arrive within `read_timeout_s`
(else 408); a fixed pool of `workers` threads answers, and the kernel queues up
to `backlog` further connections; a request over `max_instances` instances (or
`max_hidden_instances` when it asks for hidden states) gets 400; so does every
malformed field, with TensorFlow's own message when the graph refuses the input.

With a single output a signature's rows are bare values, not objects, as in TF
Serving. Not emulated: gRPC, several models or versions, request batching,
`{"b64": ...}` binary strings, the metadata endpoint.

    python -m kobert.tf_serving_shim EXPORT/tf-text --name kobert --port 8501

(It lives in the TF spoke, beside the tf and tf-text runtimes; `kobert.tf_serving_shim` forwards here.)

tensorflow_text is imported when it is installed, before the SavedModel is
loaded (a real TF Serving build must likewise be linked with its ops: the
tf-text graph uses `SentencepieceOp` and `SentencepieceTokenizeOp`).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np

from kobert.config import label_name

ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<predict>:predict)?$")
DEFAULT_SIGNATURE = "serving_default"
VERSION = "1"
HIDDEN_OUTPUTS = ("last_hidden_state",)  # per-token hidden states: sent only when "output_filter" names them
DERIVED_OUTPUTS = ("probabilities", "label")  # computed here from a [batch, labels] "logits"
ACCEPT_POLL_S = 1.0  # how long the accept loop waits for a connection the kernel announced


@dataclass(frozen=True)
class Limits:
    """What one request may cost, and how many run at once; each is a command-line option of the same name."""

    max_body_bytes: int = 4 * 1024 * 1024  # a few thousand texts; the graph keeps 64 tokens of each anyway
    max_instances: int = 256
    max_hidden_instances: int = 16  # 16 texts x 64 tokens x 768 floats: a ~15 MB JSON reply
    read_timeout_s: float = 10.0  # request line, headers and body together (and each write of the reply)
    workers: int = 8
    backlog: int = 128  # connections the kernel queues while every worker is busy

    def __post_init__(self):
        for field in fields(self):
            if not getattr(self, field.name) > 0:
                raise ValueError(f"{field.name} must be positive, got {getattr(self, field.name)}")


class BadRequest(ValueError):
    """A request TF Serving would refuse; `status` is its HTTP status (400 unless said)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def load_signatures(saved_model_dir: str | Path):
    """(the loaded SavedModel, its signatures); the first must stay referenced while they are used."""
    import tensorflow as tf

    try:
        import tensorflow_text  # noqa: F401  (registers SentencePiece and the other text ops)
    except ImportError:
        pass  # a SavedModel without text ops loads without it; one with them fails naming the op
    loaded = tf.saved_model.load(str(saved_model_dir))
    if not loaded.signatures:
        raise ValueError(f"{saved_model_dir}: SavedModel has no signatures to serve")
    return loaded, dict(loaded.signatures)


def export_label_names(saved_model_dir: str | Path) -> dict[int, str]:
    """id2label of the kobert export holding the SavedModel (EXPORT/manifest.json's config); {} if none."""
    try:
        manifest = json.loads((Path(saved_model_dir).resolve().parent / "manifest.json").read_text(encoding="utf-8"))
        return {int(k): str(v) for k, v in (manifest["config"].get("id2label") or {}).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def predict(signatures: dict, body, limits: Limits = Limits(), label_names: dict[int, str] | None = None) -> dict:
    """TF Serving's predict: a parsed JSON request body -> the response body (row or columnar format)."""
    import tensorflow as tf

    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    name = body.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(name, str):
        raise BadRequest(f"signature_name must be a string, got {type(name).__name__}")
    if name not in signatures:
        raise BadRequest(f"signature_name {name!r}: no such signature (have {', '.join(sorted(signatures))})")
    signature = signatures[name]
    specs = signature.structured_input_signature[1]  # input name -> TensorSpec
    if ("instances" in body) == ("inputs" in body):
        raise BadRequest('expected exactly one of "instances" (row format) or "inputs" (columnar format)')
    rows = "instances" in body
    wanted = wanted_outputs(signature, body.get("output_filter", None))
    columns = _columns_from_rows(body["instances"], specs) if rows else _columns(body["inputs"], specs)
    hidden = bool(set(wanted) & set(HIDDEN_OUTPUTS))
    batch = _batch_size(columns, limits.max_hidden_instances if hidden else limits.max_instances, hidden)
    try:
        feeds = {key: tf.constant(value, dtype=specs[key].dtype) for key, value in columns.items()}
        raw = {key: value.numpy() for key, value in signature(**feeds).items()}
    except (TypeError, ValueError, OverflowError, tf.errors.InvalidArgumentError) as e:
        raise BadRequest(f"signature {name!r} could not run the inputs: {framework_message(e)}") from None
    outputs = {key: _plain(value) for key, value in with_derived(raw, label_names or {}).items() if key in wanted}
    bare = len(raw) == 1 and len(outputs) == 1  # TF Serving's rule for a one-output signature
    if not rows:
        return {"outputs": next(iter(outputs.values())) if bare else outputs}
    if bare:
        return {"predictions": next(iter(outputs.values()))}
    if any(len(value) != batch for value in outputs.values()):
        raise BadRequest("row format needs every output to have the batch's size; use columnar \"inputs\"")
    return {"predictions": [{key: value[row] for key, value in outputs.items()} for row in range(batch)]}


def output_names(signature) -> list[str]:
    """The signature's outputs, then `probabilities` and `label` where it returns [batch, labels] logits."""
    outputs = signature.structured_outputs
    names = list(outputs)
    logits = outputs.get("logits")
    if logits is not None and logits.shape.rank == 2 and (logits.shape[-1] or 0) > 1:
        names += [name for name in DERIVED_OUTPUTS if name not in outputs]
    return names


def wanted_outputs(signature, output_filter) -> list[str]:
    """The outputs a reply carries: those named in "output_filter", else all but the per-token hidden states."""
    available = output_names(signature)
    if output_filter is None:
        return [name for name in available if name not in HIDDEN_OUTPUTS]
    if (not isinstance(output_filter, list) or not output_filter
            or not all(isinstance(name, str) for name in output_filter)):
        raise BadRequest('"output_filter" must be a non-empty list of output names')
    unknown = [name for name in output_filter if name not in available]
    if unknown:
        raise BadRequest(f'"output_filter": no output {", ".join(map(repr, unknown))} '
                         f"(this signature has {', '.join(available)})")
    return list(dict.fromkeys(output_filter))


def with_derived(raw: dict, label_names: dict[int, str]) -> dict:
    """The signature's outputs plus softmax `probabilities` and the top `label`'s name, from 2-D logits."""
    logits = raw.get("logits")
    if logits is None or logits.ndim != 2 or logits.shape[-1] < 2:
        return raw
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    derived = {"probabilities": shifted / shifted.sum(axis=-1, keepdims=True),
               "label": np.array([label_name(label_names, int(i)).encode("utf-8") for i in logits.argmax(-1)])}
    return {**raw, **{key: value for key, value in derived.items() if key not in raw}}


def framework_message(error: Exception) -> str:
    """TensorFlow's own words for a refused input: the op's message and node, not "Graph execution error:"
    (`indices[0,1] = 99999 is not in [0, 8002) (node Gather)`)."""
    text = str(getattr(error, "message", None) or error)
    lines = [line.strip() for line in text.splitlines()]
    # In a graph error the op's message is the line just above its `[[{{node ...}}]]` reference.
    marker = next((i for i, line in enumerate(lines) if line.startswith("[[")), 0)
    message = lines[marker - 1] if marker else next(
        (line for line in lines if line and line != "Graph execution error:"), text.strip())
    message = re.sub(r"\s*\[Op:[^\]]*\].*$", "", message) or text.strip()
    node = re.search(r"\{\{node ([^}]+)\}\}", text)
    return f"{message} (node {node[1]})" if node else message


def _columns_from_rows(instances, specs) -> dict[str, list]:
    if not isinstance(instances, list) or not instances:
        raise BadRequest('"instances" must be a non-empty list')
    if all(isinstance(row, dict) for row in instances):
        for i, row in enumerate(instances):
            if set(row) != set(specs):
                raise BadRequest(f"instance {i}: has inputs {sorted(row)}, the signature takes {sorted(specs)}")
            for key, spec in specs.items():
                check_value(row[key], key, spec, f"instance {i}", batched=False)
        return {key: [row[key] for row in instances] for key in specs}
    if len(specs) != 1:
        raise BadRequest(f"the signature takes several inputs ({', '.join(sorted(specs))}): "
                         "send each instance as an object naming them")
    key, spec = next(iter(specs.items()))
    for i, row in enumerate(instances):
        check_value(row, key, spec, f"instance {i}", batched=False)
    return {key: instances}


def _columns(inputs, specs) -> dict:
    if isinstance(inputs, dict):
        if set(inputs) != set(specs):
            raise BadRequest(f'"inputs" has {sorted(inputs)}, the signature takes {sorted(specs)}')
    elif len(specs) != 1:
        raise BadRequest(f"the signature takes several inputs ({', '.join(sorted(specs))}): send \"inputs\" as an object")
    else:
        inputs = {next(iter(specs)): inputs}
    for key, spec in specs.items():
        check_value(inputs[key], key, spec, '"inputs"', batched=True)
    return inputs


SCALARS = {  # what JSON values each TensorFlow dtype takes (bool is an int in Python: excluded by hand)
    "string": ("strings", lambda v: isinstance(v, str)),
    "bool": ("booleans", lambda v: isinstance(v, bool)),
    "integer": ("integers", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "floating": ("numbers", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
}


def check_value(value, key: str, spec, where: str, batched: bool) -> None:
    """`value` is the input's shape in nested lists (less the batch axis for an instance) around scalars of its
    dtype, as TF Serving requires; tf.constant alone would take [["a", "b"], ["c", "d"]] as four texts."""
    rank = spec.shape.rank
    if rank is None:
        return
    depth = rank if batched else rank - 1
    kind = ("string" if spec.dtype.name == "string" else "bool" if spec.dtype.is_bool
            else "integer" if spec.dtype.is_integer else "floating" if spec.dtype.is_floating else None)
    words, accepts = SCALARS.get(kind, (spec.dtype.name, lambda v: True))
    wanted = f"one {words[:-1]}" if depth == 0 else f"{depth}-level nested lists of {words}"
    level = [value]
    for axis in range(depth):
        if not all(isinstance(item, list) for item in level):
            raise BadRequest(f"{where}: {key} takes {wanted} ({spec.dtype.name}, shape {spec.shape}), "
                             f"got {_kind(next(i for i in level if not isinstance(i, list)))} at depth {axis}")
        if len({len(item) for item in level}) > 1:
            raise BadRequest(f"{where}: {key}: lists of different lengths at depth {axis + 1} (the input is a tensor)")
        level = [item for items in level for item in items]
    for item in level:
        if not accepts(item):
            raise BadRequest(f"{where}: {key} takes {wanted} ({spec.dtype.name}, shape {spec.shape}), got {_kind(item)}")


def _kind(value) -> str:
    return {list: "a list", dict: "an object", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _batch_size(columns: dict, cap: int, hidden: bool) -> int:
    sizes = {len(value) if isinstance(value, list) else 1 for value in columns.values()}
    if len(sizes) != 1:
        raise BadRequest(f"inputs of different batch sizes ({', '.join(map(str, sorted(sizes)))})")
    batch = sizes.pop()
    if batch > cap:
        raise BadRequest(f"{batch} instances: this server takes at most {cap} per request"
                         f"{' that asks for hidden states' if hidden else ''}; "
                         "send them in smaller requests")
    return batch


def _plain(array):
    """A numpy output as JSON values (strings decoded from UTF-8, as TF Serving writes them)."""
    if array.dtype.kind in "SO":
        return [_plain(a) for a in array] if array.ndim else array.item().decode("utf-8", "replace")
    return array.tolist()


# --- the server ----------------------------------------------------------------------------------


class _DeadlineReader(io.RawIOBase):
    """A socket's reads under one deadline for the whole request: a per-read timeout alone lets a
    client that sends a byte every few seconds hold a worker for ever."""

    def __init__(self, sock: socket.socket, seconds: float):
        self.sock, self.deadline = sock, time.monotonic() + seconds

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("read deadline passed")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class ShimServer(HTTPServer):
    """HTTPServer with a fixed pool of worker threads: a connection is accepted only when a worker is
    free, so the others wait in the kernel's listen queue (`backlog` deep), not in threads or memory."""

    def __init__(self, address, saved_model_dir: str | Path, model_name: str, limits: Limits):
        self.model, self.signatures = load_signatures(saved_model_dir)  # the model keeps the variables alive
        self.model_name, self.limits, self.label_names = model_name, limits, export_label_names(saved_model_dir)
        self.request_queue_size = limits.backlog  # what server_activate passes to listen()
        self._free_workers = threading.BoundedSemaphore(limits.workers)
        self._pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="tf-serving-shim")
        super().__init__(address, ShimHandler)
        self.socket.settimeout(ACCEPT_POLL_S)  # a connection gone before accept() does not block the loop

    def get_request(self):
        self._free_workers.acquire()
        try:
            return super().get_request()
        except BaseException:
            self._free_workers.release()
            raise

    def process_request(self, request, client_address) -> None:
        try:
            self._pool.submit(self._answer, request, client_address)
        except RuntimeError:  # the pool is shut down: the server is closing
            self.shutdown_request(request)
            self._free_workers.release()

    def _answer(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._free_workers.release()

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # a client that left is not the server's error
            super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class ShimHandler(BaseHTTPRequestHandler):
    """One request per connection (HTTP/1.0), read under one deadline, answered with JSON."""

    server: ShimServer

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self.server.limits.read_timeout_s))
        self.command, self.request_version, self.requestline = None, "HTTP/1.0", ""  # until the request line
        self._replied = self._linger = False

    def handle_one_request(self) -> None:
        self.close_connection = True
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                return
            if len(self.raw_requestline) > 65536:
                return self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
            if self.parse_request():  # else it has replied (400, 431, 505)
                self._dispatch()
        except TimeoutError:
            self._reply_unless_replied(408, f"request not received within {self.server.limits.read_timeout_s:g} s")
        except OSError:
            pass  # the client went away: nobody to answer
        except Exception as e:  # never a dead thread and a silent socket
            self._reply_unless_replied(500, f"internal error: {type(e).__name__}: {framework_message(e)}")

    def _dispatch(self) -> None:
        route = ROUTE.match(self.path)
        name = self.server.model_name
        if not route or route["name"] != name or route["version"] not in (None, VERSION):
            return self._reply(404, {"error": f"{self.path}: no such model (serving /v1/models/{name}, "
                                              f"version {VERSION})"})
        allowed = "POST" if route["predict"] else "GET"
        if self.command != allowed:
            return self._reply(405, {"error": f"{self.command} {self.path}: not allowed, use {allowed}"},
                               {"Allow": allowed})
        if allowed == "GET":
            return self._reply(200, {"model_version_status": [
                {"version": VERSION, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
        try:
            self._reply(200, predict(self.server.signatures, self._read_json(), self.server.limits,
                                     self.server.label_names))
        except BadRequest as e:
            self._reply(e.status, {"error": str(e)})

    def _read_json(self):
        cap = self.server.limits.max_body_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise BadRequest("a chunked request body is not accepted: send Content-Length", 411)
        declared = self.headers.get_all("Content-Length") or []
        if not declared:
            raise BadRequest("a POST needs a Content-Length header", 411)
        if len(set(declared)) != 1 or not re.fullmatch(r"[0-9]+", declared[0]):
            raise BadRequest(f"Content-Length {', '.join(declared)!r}: expected one non-negative integer")
        # Read no body over the cap: compared as text first, as a 5,000-digit length is not an int to Python.
        if len(declared[0].lstrip("0")) > len(str(cap)) or int(declared[0]) > cap:
            raise BadRequest(f"a request body of {declared[0][:24]} bytes is over this server's cap of {cap:,} "
                             "(--max-body-bytes)", 413)
        length = int(declared[0])
        data = self.rfile.read(length)
        if len(data) < length:
            raise BadRequest(f"the request body ended after {len(data):,} of its {length:,} bytes")
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
            raise BadRequest(f"request body is not JSON: {e}") from None
        except RecursionError:
            raise BadRequest("request body nests JSON deeper than Python's parser goes") from None

    def send_error(self, code, message=None, explain=None) -> None:  # http.server's own refusals, as JSON
        self._reply(int(code), {"error": message or HTTPStatus(code).phrase})

    def _reply_unless_replied(self, status: int, error: str) -> None:
        if not self._replied:
            try:
                self._reply(status, {"error": error})
            except OSError:
                pass

    def _reply(self, status: int, body: dict, headers: dict | None = None) -> None:
        self._replied, self._linger = True, status >= 400
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.connection.settimeout(self.server.limits.read_timeout_s)  # a client that never reads is dropped
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                           **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def finish(self) -> None:
        super().finish()
        if self._linger:
            self._drain()

    def _drain(self) -> None:
        """After an error reply the client may still be sending the body we refused: closing a socket
        with unread bytes sends a reset, which can destroy the reply before the client reads it. So
        end our side, then discard what still arrives (a lingering close; at most 1 s and 1 MiB, and
        0.2 s of silence ends it)."""
        try:
            self.connection.shutdown(socket.SHUT_WR)
            deadline, left = time.monotonic() + 1.0, 1 << 20
            while left > 0 and time.monotonic() < deadline:
                self.connection.settimeout(min(0.2, max(0.01, deadline - time.monotonic())))
                chunk = self.connection.recv(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:  # silence (a timeout) or a client already gone
            pass

    def log_message(self, *args) -> None:  # quiet: a test's output stays readable
        pass


def make_server(saved_model_dir: str | Path, name: str = "kobert", host: str = "127.0.0.1", port: int = 0,
                limits: Limits = Limits()) -> ShimServer:
    """A server answering TF Serving's REST API for one model (port 0: a free one, see `server_address`)."""
    return ShimServer((host, port), saved_model_dir, name, limits)


@contextmanager
def serving(saved_model_dir: str | Path, name: str = "kobert", host: str = "127.0.0.1", limits: Limits = Limits()):
    """The shim on a free loopback port in a thread; yields its base URL, stops it on exit."""
    server = make_server(saved_model_dir, name, host, 0, limits)
    thread = threading.Thread(target=server.serve_forever, name="tf-serving-shim", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kobert.tf_serving_shim", description=__doc__.splitlines()[0])
    parser.add_argument("saved_model", help="a SavedModel folder (e.g. EXPORT/tf-text)")
    parser.add_argument("--name", default="kobert", help="the model name in /v1/models/<name>")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8501, help="TF Serving's REST port is 8501 (0: a free one)")
    for field in fields(Limits):  # --max-body-bytes, --max-instances, ... --backlog
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=float if field.type == "float" else int,
                            default=field.default, metavar="N", help=f"default {field.default}")
    args = parser.parse_args(argv)
    try:
        limits = Limits(**{field.name: getattr(args, field.name) for field in fields(Limits)})
    except ValueError as e:
        parser.error(str(e))
    server = make_server(args.saved_model, args.name, args.host, args.port, limits)
    print(f"serving {args.saved_model} at http://{args.host}:{server.server_address[1]}/v1/models/{args.name}:predict",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
