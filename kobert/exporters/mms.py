"""`kobert package mms`: a Multi Model Server archive (.mar) of an export's `mxnet` artifact.

The archive holds the symbol + params, the export's `tokenizer.json`, a small
JSON of what the handler needs (`SPEC_FILE`: input names and dtypes, output
names, labels, max length, pad id, the batch size it was packaged for) and a
handler generated from `HANDLER_TEMPLATE`. The handler needs only mxnet, numpy
and `tokenizers` where MMS runs: no kobert, transformers or torch. It encodes
texts by the rules of `kobert.encoding.TextEncoder` (truncation to
min(model positions, tokenizer_config.json model_max_length), [PAD] padding,
specials from the tokenizer's post-processor); the builder computes those
numbers with `TextEncoder` itself and writes them into the spec.

Requests, `POST /predictions/<name>`:
    {"text": "..."}      -> {"logits": [...], "label": "...", "probabilities": [...]}
    {"texts": [...]}     -> a list of those, in order
A model without a task head answers {"embedding": [...], "pooling": "cls"} (the [CLS] vector).
Beside the archive, `build` writes `<name>.properties`, the MMS configuration to serve it with
(`CONFIG_PROPERTIES`: decode_input_request=false). The handler then gets each body as bytes and
reads it itself: a malformed one (not UTF-8, not JSON, wrong types, a lone surrogate, over the
caps) gets its own 400 or 413 with {"error": ...}, and its batch-mates their answers.

MMS 1.1 registers models named at startup (`--models name=file.mar`) with
batch size 1; batching is a registration parameter of the management API
(`POST /models?url=file.mar&batch_size=N&max_batch_delay=MS`, see
`registration_query`). The handler takes whatever batch MMS hands it, answers
every request of it from one forward pass (in chunks of `MAX_TEXTS_PER_FORWARD`
texts) and logs a warning when registered with another batch size than packaged.

This module imports no mxnet: the archive is written by `model-archiver`
(1.0.3) run in the MXNet interpreter (`kobert.mxnet_env`), with `--runtime
python`, which makes MMS start the worker with the interpreter MMS itself runs
in (`python3` would start whatever `python3` is first on PATH).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import string
import tempfile
import urllib.parse
import zipfile
from pathlib import Path

from kobert.config import KoBertConfig
from kobert.encoding import TextEncoder, pad_encodings
from kobert.mxnet_env import MXNetCommand, mxnet_python
from kobert.runtimes.base import inside, read_manifest, verify_files
from kobert.staging import write_json

ARTIFACT = "mxnet"
HANDLER_MODULE = "kobert_mms_handler"  # a name no other module on a worker's path has
HANDLER_ENTRY = f"{HANDLER_MODULE}:handle"
SPEC_FILE = "kobert_mms.json"
SPEC_FORMAT = "kobert-mms/1"
# MMS and model-archiver both accept only these model names (and put them in URLs).
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")
# Heads the handler answers: their reply is one row per text.
SERVED_HEADS = ("sequence_classification", "none")
# A request may carry many texts; one forward pass takes at most this many (memory stays flat).
MAX_TEXTS_PER_FORWARD = 32
# How long MMS waits to fill a batch (registration parameter `max_batch_delay`, ms).
DEFAULT_MAX_BATCH_DELAY_MS = 50
# What one request may carry; past these the handler answers 413 and reads no further. A body is
# bounded below MMS's own max_request_size (6,553,500 bytes); a text's cap is far past what
# truncation keeps (512 tokens), so no real text meets it, and tokenizing a batch stays cheap.
MAX_BODY_BYTES = 1 << 20
MAX_TEXTS_PER_REQUEST = 256
MAX_TEXT_CHARS = 20_000
# config.properties for the MMS that serves the archive. decode_input_request=false: MMS's Python side
# then hands the handler the body as bytes instead of running json.loads itself, which, on a body that
# is not JSON, raises outside any handler and kills the worker (its batch-mates, and every request
# until it restarts, get 500). The handler parses, caps and validates each body on its own.
CONFIG_PROPERTIES = """\
inference_address={inference_address}
management_address={management_address}
model_store={model_store}
default_workers_per_model=1
decode_input_request=false
"""
ARCHIVER_REQUIREMENT = "model-archiver==1.0.3"
# model-archiver only zips a folder: past this, it hangs, and is killed.
ARCHIVER_TIMEOUT_S = 600


def build(export_dir: Path, out: Path, batch_size: int = 1) -> Path:
    """Write `out` (a .mar) serving `export_dir`'s mxnet artifact; return its path."""
    export_dir, out = Path(export_dir), Path(out)
    model_name = _check_out(out)
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    manifest = read_manifest(export_dir)
    entry = manifest["artifacts"].get(ARTIFACT)
    if not isinstance(entry, dict) or not isinstance(entry.get("files"), list):
        have = ", ".join(manifest["artifacts"]) or "none"
        raise ValueError(f"{export_dir}: no {ARTIFACT!r} artifact to package (it has {have}); "
                         f"export with `kobert export SRC --to mxnet`")
    tokenizer_name = manifest.get("tokenizer")
    if not tokenizer_name:
        raise ValueError(f"{export_dir}: this export has no tokenizer, which the MMS handler needs "
                         f"(export with --tokenizer PATH)")
    config = KoBertConfig.from_hf_dict(manifest.get("config"), source=f"{export_dir}/manifest.json")
    if config.head not in SERVED_HEADS:
        raise ValueError(f"{export_dir}: the MMS handler serves a sequence classifier or a bare encoder, "
                         f"not a {config.head} head")
    verify_files(export_dir, entry, f"artifact {ARTIFACT!r}")
    if "tokenizer_sha256" in manifest:
        verify_files(export_dir, {"files": [tokenizer_name], "sha256": manifest["tokenizer_sha256"]}, "the tokenizer")
    symbol_file, params_file = _symbol_and_params(export_dir, entry)
    tokenizer_dir = inside(export_dir, tokenizer_name)
    encoder = TextEncoder(tokenizer_dir, config.max_position_embeddings, config.vocab_size)
    spec = serving_spec(manifest, entry, config, encoder, batch_size, symbol_file.name, params_file.name)

    out.parent.mkdir(parents=True, exist_ok=True)
    # Staged beside `out` and renamed into place: a failed build leaves any earlier archive untouched.
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as staging:
        model_dir = Path(staging) / "model"
        model_dir.mkdir()
        for source in (symbol_file, params_file, tokenizer_dir / "tokenizer.json"):
            shutil.copyfile(source, model_dir / source.name)
        write_json(model_dir / SPEC_FILE, spec)
        (model_dir / f"{HANDLER_MODULE}.py").write_text(handler_source(manifest), encoding="utf-8")
        archive = _run_model_archiver(model_name, model_dir, Path(staging))
        staged_config = Path(staging) / "config.properties"
        staged_config.write_text(config_properties(out.parent.resolve()), encoding="utf-8")
        os.replace(archive, out)
        os.replace(staged_config, config_path(out))
    return out


def config_path(mar: Path) -> Path:
    """Where `build` writes the MMS configuration for `mar`: beside it, `<name>.properties`."""
    return Path(mar).with_suffix(".properties")


def config_properties(model_store: Path, inference_address: str = "http://127.0.0.1:8080",
                      management_address: str = "http://127.0.0.1:8081") -> str:
    """The config.properties to serve archives of `model_store` with (`--mms-config FILE`)."""
    return CONFIG_PROPERTIES.format(inference_address=inference_address, management_address=management_address,
                                    model_store=model_store)


def serving_spec(manifest: dict, entry: dict, config: KoBertConfig, encoder: TextEncoder, batch_size: int,
                 symbol_name: str, params_name: str) -> dict:
    """What the handler reads from `SPEC_FILE`: everything it needs besides the three model files."""
    return {
        "format": SPEC_FORMAT,
        "symbol_file": symbol_name,
        "params_file": params_name,
        "tokenizer_file": "tokenizer.json",
        "inputs": [{"name": spec["name"], "dtype": spec.get("dtype", "float32")} for spec in entry["inputs"]],
        "outputs": list(entry["outputs"]),
        "head": config.head,
        "labels": config.label_names,  # index i is label id i
        "pooling": "cls",
        "max_length": encoder.max_length,
        "pad_id": encoder.pad_id,
        "batch_size": batch_size,
        "max_texts_per_forward": MAX_TEXTS_PER_FORWARD,
        "max_body_bytes": MAX_BODY_BYTES,
        "max_texts_per_request": MAX_TEXTS_PER_REQUEST,
        "max_text_chars": MAX_TEXT_CHARS,
        "source": manifest.get("source", {}).get("location"),
    }


def registration_query(mar_name: str, model_name: str, batch_size: int,
                       max_batch_delay_ms: int = DEFAULT_MAX_BATCH_DELAY_MS, workers: int = 1) -> str:
    """The management API's `POST /models?...` query registering an archive with MMS batching."""
    return "models?" + urllib.parse.urlencode({
        "url": mar_name, "model_name": model_name, "batch_size": batch_size,
        "max_batch_delay": max_batch_delay_ms, "initial_workers": workers, "synchronous": "true"})


def packaged_spec(mar: Path) -> dict:
    """The `SPEC_FILE` inside a .mar this module wrote (a .mar is a zip)."""
    with zipfile.ZipFile(mar) as archive:
        return json.loads(archive.read(SPEC_FILE).decode("utf-8"))


# --- the pieces of build ---------------------------------------------------------------


def _check_out(out: Path) -> str:
    """The MMS model name for `out` (its stem); refuses a directory, another suffix, or a bad name."""
    if out.is_dir():
        raise ValueError(f"--out {out}: is a directory; expected a file name ending in .mar")
    if out.suffix != ".mar":
        raise ValueError(f"--out {out}: expected a file name ending in .mar")
    if not MODEL_NAME_PATTERN.match(out.stem):
        raise ValueError(f"--out {out}: the name {out.stem!r} becomes the MMS model name, which must match "
                         f"{MODEL_NAME_PATTERN.pattern}")
    return out.stem


def _symbol_and_params(export_dir: Path, entry: dict) -> tuple[Path, Path]:
    files = [inside(export_dir, f) for f in entry["files"]]
    if len(files) != 2 or not files[0].name.endswith("-symbol.json") or files[1].suffix != ".params":
        raise ValueError(f"{export_dir}: the {ARTIFACT!r} artifact should list a -symbol.json and a .params file, "
                         f"it lists {entry['files']}")
    return files[0], files[1]


def _run_model_archiver(model_name: str, model_dir: Path, export_path: Path) -> Path:
    """`model-archiver` in the MXNet interpreter; the path of the .mar it wrote."""
    command = MXNetCommand.build(mxnet_python(), "-m", "model_archiver.model_packaging",
                                 "--model-name", model_name, "--model-path", str(model_dir.resolve()),
                                 "--handler", HANDLER_ENTRY, "--runtime", "python",
                                 "--export-path", str(export_path.resolve()))
    proc = command.run(ARCHIVER_TIMEOUT_S, "model-archiver")
    if "No module named model_archiver" in proc.stderr:
        raise RuntimeError(f"model-archiver is not installed for {command.argv[0]}: "
                           f"run `{command.argv[0]} -m pip install {ARCHIVER_REQUIREMENT}` (or `bash ci/setup.sh`)")
    archive = export_path / f"{model_name}.mar"
    if proc.returncode != 0 or not archive.is_file():
        lines = [line for line in proc.stderr.splitlines() if line.strip()] or ["(no output)"]
        raise RuntimeError(f"model-archiver failed (exit code {proc.returncode}): {lines[-1].strip()}\n"
                           + "\n".join(lines)[-4000:])
    return archive


def handler_source(manifest: dict) -> str:
    """The handler module's source for an export (its docstring names where it came from)."""
    from kobert import __version__

    source = manifest.get("source", {}).get("location") or "an export"
    return HANDLER_TEMPLATE.substitute(source=source, kobert_version=__version__, spec_file=SPEC_FILE,
                                       pad_encodings=inspect.getsource(pad_encodings))


# The handler: it runs inside an MMS worker, with mxnet, numpy and tokenizers only.
# string.Template placeholders: source, kobert_version, spec_file, pad_encodings (the source of
# kobert.encoding.pad_encodings, so the handler pads exactly as every kobert runtime does).
HANDLER_TEMPLATE = string.Template('''\
"""MMS handler for KoBERT, generated by `kobert package mms` (kobert $kobert_version) from $source.

Needs only mxnet, numpy and tokenizers. `$spec_file` beside this file says
what the model takes and gives. POST a JSON body {"text": "..."} or
{"texts": ["...", ...]}; a classifier answers {"logits", "label", "probabilities"}
per text, a bare encoder {"embedding", "pooling"}.
"""

import json
import logging
import os

import numpy as np

SPEC_FILE = "$spec_file"
logger = logging.getLogger(__name__)


$pad_encodings
_service = None


class RequestError(ValueError):
    """A request this handler does not answer: its HTTP status (4xx, or 500) and why."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


REASONS = {400: "Bad Request", 413: "Payload Too Large", 500: "Internal Server Error"}


class KobertService:
    def __init__(self, model_dir, registered_batch_size):
        import mxnet as mx
        from tokenizers import Tokenizer

        self.mx = mx
        with open(os.path.join(model_dir, SPEC_FILE), encoding="utf-8") as f:
            self.spec = spec = json.load(f)
        self.input_names = [i["name"] for i in spec["inputs"]]
        self.input_dtypes = [i["dtype"] for i in spec["inputs"]]
        self.outputs = spec["outputs"]
        self.labels = spec["labels"]
        self.block = mx.gluon.SymbolBlock.imports(os.path.join(model_dir, spec["symbol_file"]), self.input_names,
                                                  os.path.join(model_dir, spec["params_file"]), ctx=mx.cpu())
        self.block.hybridize(static_alloc=True)
        self.tokenizer = Tokenizer.from_file(os.path.join(model_dir, spec["tokenizer_file"]))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(spec["max_length"])
        if self.tokenizer.token_to_id("[PAD]") != spec["pad_id"]:
            raise ValueError("%s: [PAD] is not id %d in the packaged tokenizer" % (SPEC_FILE, spec["pad_id"]))
        self.predict([""])  # builds the graph now: a broken model fails the worker, not the first request
        if registered_batch_size != spec["batch_size"]:
            logger.warning("kobert: packaged for batch_size=%d but registered with batch_size=%s; register with "
                           "POST /models?url=<file>.mar&batch_size=%d&max_batch_delay=50 to batch requests",
                           spec["batch_size"], registered_batch_size, spec["batch_size"])

    def handle(self, data, context):
        """One reply per request of the batch: a bad request gets its own 4xx, its batch-mates their answers."""
        parsed = [read_request(request, self.spec) for request in data]
        good = [p for p in parsed if not isinstance(p, RequestError)]
        answers = iter(self.answer([texts for texts, _ in good]))
        logger.info("kobert: batch of %d requests, %d texts", len(data), sum(len(texts) for texts, _ in good))
        replies = []
        for index, p in enumerate(parsed):
            rows = p if isinstance(p, RequestError) else next(answers)
            if isinstance(rows, RequestError):
                replies.append(error_reply(context, index, rows))
            else:
                replies.append(json_reply(rows[0] if p[1] else rows))
        return aligned(replies, context)

    def answer(self, requests):
        """Reply rows for each request (a list of texts); if one forward pass of them all fails, each alone."""
        try:
            rows = self.predict([text for texts in requests for text in texts])
        except Exception:
            logger.warning("kobert: a batch of %d requests failed; answering each alone", len(requests), exc_info=True)
            return [self.answer_alone(texts) for texts in requests]
        answers, start = [], 0
        for texts in requests:
            answers.append(rows[start:start + len(texts)])
            start += len(texts)
        return answers

    def answer_alone(self, texts):
        try:
            return self.predict(texts)
        except Exception as e:
            logger.warning("kobert: a request of %d texts failed", len(texts), exc_info=True)
            return RequestError("the model failed on this request (%s)" % type(e).__name__, 500)

    def predict(self, texts):
        """One reply dict per text, in order."""
        rows = []
        step = self.spec["max_texts_per_forward"]
        for start in range(0, len(texts), step):
            outputs = self.forward(self.encode(texts[start:start + step]))
            rows.extend(self.reply_rows(outputs))
        return rows

    def encode(self, texts):
        """As kobert's TextEncoder: truncated ids with specials, padded with [PAD] to the longest."""
        return pad_encodings(self.tokenizer.encode_batch(texts), self.spec["pad_id"])

    def forward(self, arrays):
        mx = self.mx
        inputs = [mx.nd.array(arrays[name], dtype=dtype) for name, dtype in zip(self.input_names, self.input_dtypes)]
        outputs = self.block(*inputs)
        if isinstance(outputs, mx.nd.NDArray):
            outputs = [outputs]
        return {name: o.asnumpy() for name, o in zip(self.outputs, outputs)}

    def reply_rows(self, outputs):
        if self.spec["head"] == "none":
            return [{"embedding": v.tolist(), "pooling": "cls"} for v in outputs["last_hidden_state"][:, 0]]
        logits = outputs["logits"].astype(np.float64)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
        return [{"logits": row.tolist(), "label": self.labels[int(np.argmax(row))],
                 "probabilities": p.tolist()} for row, p in zip(outputs["logits"], probabilities)]


def read_request(request, spec):
    """(texts, single) from one MMS request, or the RequestError it gets; never raises.

    MMS runs with decode_input_request=false, so the body arrives as the bytes the client sent,
    whatever its Content-Type: the handler caps, decodes and parses it here, one request at a time.
    """
    try:
        return texts_of(parse_body(request, spec["max_body_bytes"]), spec)
    except RequestError as e:
        return e
    except Exception as e:  # a request must never fail its batch-mates, whatever it holds
        logger.warning("kobert: could not read a request", exc_info=True)
        return RequestError("could not read the request (%s)" % type(e).__name__)


def parse_body(request, max_body_bytes):
    """The JSON value of a request's body: {"body": bytes} from a POST body, {"data": ...} from a form."""
    body = request.get("body")
    if body is None:
        body = request.get("data")
    if body is None:
        raise RequestError(EXPECTED)
    if isinstance(body, str):  # a server run with decode_input_request=true hands over text/* bodies as str
        body = body.encode("utf-8", "surrogatepass")
    if not isinstance(body, (bytes, bytearray)):  # ... and application/json bodies already parsed
        return body
    if len(body) > max_body_bytes:
        raise RequestError("the request body is %d bytes, more than this server takes (%d)"
                           % (len(body), max_body_bytes), 413)
    try:
        text = bytes(body).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RequestError("the request body is not UTF-8 (byte 0x%02x at offset %d)" % (body[e.start], e.start))
    try:
        return json.loads(text)
    except RecursionError:
        raise RequestError("the request body is JSON nested too deeply")
    except ValueError as e:
        raise RequestError("the request body is not JSON (%s); %s" % (e, EXPECTED))


EXPECTED = 'expected a JSON body {"text": "..."} or {"texts": [...]}'


def texts_of(body, spec):
    """(texts, single) from a parsed body {"text": str} or {"texts": [str, ...]}, each text checked."""
    if not isinstance(body, dict) or ("text" in body) == ("texts" in body):
        raise RequestError(EXPECTED)
    if "text" in body:
        return [checked_text(body["text"], "text", spec)], True
    texts = body["texts"]
    if not isinstance(texts, list):
        raise RequestError("texts: expected a list of strings, got %s" % type(texts).__name__)
    if len(texts) > spec["max_texts_per_request"]:
        raise RequestError("texts: %d texts, more than one request may carry (%d)"
                           % (len(texts), spec["max_texts_per_request"]), 413)
    return [checked_text(text, "texts[%d]" % i, spec) for i, text in enumerate(texts)], False


def checked_text(text, where, spec):
    if not isinstance(text, str):
        raise RequestError("%s: expected a string, got %s" % (where, type(text).__name__))
    if len(text) > spec["max_text_chars"]:
        raise RequestError("%s: %d characters, more than this server takes (%d; the model reads at most %d tokens)"
                           % (where, len(text), spec["max_text_chars"], spec["max_length"]), 413)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # JSON's "\\ud800" escapes make them; the tokenizer cannot take them
        raise RequestError("%s: a lone surrogate U+%04X at character %d is not Unicode text"
                           % (where, ord(text[e.start]), e.start))
    return text


def json_reply(value):
    """Bytes, so MMS sends them as they are (it would re-encode a str, and fail the batch on a bad one)."""
    try:
        return json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value).encode("ascii")


def error_reply(context, index, error):
    context.set_response_status(error.status, REASONS.get(error.status, "Error"), index)
    return json_reply({"error": str(error)})


# MMS 1.1.11's frontend decodes a worker's reply frame as it arrives, in reads of a multiple of 16
# bytes, and reads each reply's 4-byte status code (and each response header) without checking that
# it has all arrived: a read that ends inside one raises there, the frontend drops the connection and
# the worker dies with its batch ("Invalid message size: -3" in mms_log.log). So the handler sets no
# response header (not even Content-Type) and pads replies with spaces, which JSON allows, so that
# every status code starts at byte STATUS_AT of a 16-byte block, clear of any read's end.
FRAME_HEAD = 4 + 4 + len("Prediction success")  # code, message length, message
STATUS_AT = 6


def aligned(replies, context):
    """`replies` padded so that each status code in MMS's reply frame starts at STATUS_AT mod 16."""
    offset, out = FRAME_HEAD, []
    for index, reply in enumerate(replies):
        request_id = (context.get_request_id(index) or "").encode("utf-8")
        status = offset + 4 + len(request_id) + 4  # request id length and bytes, content type length 0
        if out:
            pad = (STATUS_AT - status) % 16
            out[-1] += b" " * pad
            status += pad
        phrase = (context.get_response_status(index)[1] or "").encode("utf-8")
        offset = status + 4 + 4 + len(phrase) + 4 + 4 + len(reply)  # status, phrase, 0 headers, reply
        out.append(reply)
    return out


def handle(data, context):
    """MMS entry point: called with data=None once at load, then with each batch of requests."""
    global _service
    if _service is None:
        properties = context.system_properties
        _service = KobertService(properties["model_dir"], properties.get("batch_size"))
    if data is None:
        return None
    try:
        return _service.handle(data, context)
    except Exception as e:  # a 500 for each request, and the worker goes on
        logger.error("kobert: the handler failed on a batch of %d requests", len(data), exc_info=True)
        return aligned([error_reply(context, i, RequestError("the handler failed (%s)" % type(e).__name__, 500))
                        for i in range(len(data))], context)
''')
