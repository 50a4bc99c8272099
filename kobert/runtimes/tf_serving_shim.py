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
      -> {"predictions": [{"logits": [...], "input_ids": [...], ...}, ...]}   one object per row
      columnar:     {"inputs": {"text": ["...", ...]}}  or  {"inputs": ["...", ...]}
      -> {"outputs": {"logits": [[...], ...], ...}}
    GET  /v1/models/<name>  -> the model's version status
    errors: HTTP 400 (bad request) or 404 (unknown model), body {"error": "..."}

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
import json
import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<predict>:predict)?$")
DEFAULT_SIGNATURE = "serving_default"
VERSION = "1"


class BadRequest(ValueError):
    """A request TF Serving would refuse with HTTP 400."""


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


def predict(signatures: dict, body: dict) -> dict:
    """TF Serving's predict: a parsed JSON request body -> the response body (row or columnar format)."""
    import tensorflow as tf

    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    name = body.get("signature_name", DEFAULT_SIGNATURE)
    if name not in signatures:
        raise BadRequest(f"signature_name {name!r}: no such signature (have {', '.join(sorted(signatures))})")
    signature = signatures[name]
    specs = signature.structured_input_signature[1]  # input name -> TensorSpec
    if ("instances" in body) == ("inputs" in body):
        raise BadRequest('expected exactly one of "instances" (row format) or "inputs" (columnar format)')
    rows = "instances" in body
    columns = _columns_from_rows(body["instances"], specs) if rows else _columns(body["inputs"], specs)
    try:
        feeds = {key: tf.constant(value, dtype=specs[key].dtype) for key, value in columns.items()}
        outputs = {key: _plain(value.numpy()) for key, value in signature(**feeds).items()}
    except (TypeError, ValueError, tf.errors.InvalidArgumentError) as e:
        raise BadRequest(f"signature {name!r} could not run the inputs: {str(e).strip().splitlines()[0]}") from None
    if not rows:
        return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values()))}
    batch = {len(value) for value in outputs.values()}
    if len(batch) != 1:
        raise BadRequest("row format needs every output to have the same batch size; use columnar \"inputs\"")
    return {"predictions": [{key: value[row] for key, value in outputs.items()} for row in range(batch.pop())]}


def _columns_from_rows(instances, specs) -> dict[str, list]:
    if not isinstance(instances, list) or not instances:
        raise BadRequest('"instances" must be a non-empty list')
    if all(isinstance(row, dict) for row in instances):
        for i, row in enumerate(instances):
            if set(row) != set(specs):
                raise BadRequest(f"instance {i}: has inputs {sorted(row)}, the signature takes {sorted(specs)}")
        return {key: [row[key] for row in instances] for key in specs}
    if len(specs) != 1:
        raise BadRequest(f"the signature takes several inputs ({', '.join(sorted(specs))}): "
                         "send each instance as an object naming them")
    return {next(iter(specs)): instances}


def _columns(inputs, specs) -> dict:
    if isinstance(inputs, dict):
        if set(inputs) != set(specs):
            raise BadRequest(f'"inputs" has {sorted(inputs)}, the signature takes {sorted(specs)}')
        return inputs
    if len(specs) != 1:
        raise BadRequest(f"the signature takes several inputs ({', '.join(sorted(specs))}): send \"inputs\" as an object")
    return {next(iter(specs)): inputs}


def _plain(array):
    """A numpy output as JSON values (strings decoded from UTF-8, as TF Serving writes them)."""
    if array.dtype.kind in "SO":
        return [_plain(a) for a in array] if array.ndim else array.item().decode("utf-8", "replace")
    return array.tolist()


def make_server(saved_model_dir: str | Path, name: str = "kobert", host: str = "127.0.0.1",
                port: int = 0) -> ThreadingHTTPServer:
    """A server answering TF Serving's REST API for one model (port 0: a free one, see `server_address`)."""
    loaded, signatures = load_signatures(saved_model_dir)

    class Handler(BaseHTTPRequestHandler):
        model = loaded  # keeps the SavedModel's variables alive with the server

        def do_GET(self):
            route = self._route()
            if route and not route["predict"]:
                self._reply(200, {"model_version_status": [
                    {"version": VERSION, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})

        def do_POST(self):
            route = self._route()
            if not route:
                return
            if not route["predict"]:
                return self._reply(404, {"error": f"{self.path}: only :predict is served"})
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length).decode("utf-8"))
                self._reply(200, predict(signatures, body))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                self._reply(400, {"error": f"request body is not JSON: {e}"})
            except BadRequest as e:
                self._reply(400, {"error": str(e)})

        def _route(self):
            route = ROUTE.match(self.path)
            if not route or route["name"] != name or route["version"] not in (None, VERSION):
                self._reply(404, {"error": f"{self.path}: no such model (serving /v1/models/{name}, "
                                           f"version {VERSION})"})
                return None
            return route

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # quiet: a test's output stays readable
            pass

    return ThreadingHTTPServer((host, port), Handler)


@contextmanager
def serving(saved_model_dir: str | Path, name: str = "kobert", host: str = "127.0.0.1"):
    """The shim on a free loopback port in a thread; yields its base URL, stops it on exit."""
    server = make_server(saved_model_dir, name, host, 0)
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
    parser.add_argument("--port", type=int, default=8501, help="TF Serving's REST port is 8501")
    args = parser.parse_args(argv)
    server = make_server(args.saved_model, args.name, args.host, args.port)
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
