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
import subprocess
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
        os.replace(archive, out)
    return out


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
    try:
        proc = subprocess.run(command.argv, env=command.env, cwd=command.cwd, capture_output=True, text=True,
                              timeout=ARCHIVER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"model-archiver did not finish within {ARCHIVER_TIMEOUT_S} s and was killed "
                           f"({command.argv[0]} -m model_archiver.model_packaging)") from None
    if "No module named model_archiver" in proc.stderr:
        raise RuntimeError(f"model-archiver is not installed for {command.argv[0]}: "
                           f"run `{command.argv[0]} -m pip install {ARCHIVER_REQUIREMENT}` (or `bash ci/setup.sh`)")
    archive = export_path / f"{model_name}.mar"
    if proc.returncode != 0 or not archive.is_file():
        lines = [line for line in proc.stderr.splitlines() if line.strip()] or ["(no output)"]
        raise RuntimeError(f"model-archiver failed (exit code {proc.returncode}): {lines[-1].strip()}")
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
    """A request this handler cannot answer: HTTP 400 with the message."""


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
        """One reply per request of the batch; a bad request gets 400 without failing the others."""
        parsed = []
        for request in data:
            try:
                parsed.append(texts_of(request))
            except RequestError as e:
                parsed.append(e)
        texts = [t for p in parsed if not isinstance(p, RequestError) for t in p[0]]
        rows = self.predict(texts) if texts else []
        logger.info("kobert: batch of %d requests, %d texts", len(data), len(texts))
        replies, start = [], 0
        for index, p in enumerate(parsed):
            context.set_response_content_type(index, "application/json")
            if isinstance(p, RequestError):
                context.set_response_status(400, "Bad Request", index)
                replies.append(json.dumps({"error": str(p)}, ensure_ascii=False))
                continue
            request_texts, single = p
            answer = rows[start:start + len(request_texts)]
            start += len(request_texts)
            replies.append(json.dumps(answer[0] if single else answer, ensure_ascii=False))
        return replies

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


def texts_of(request):
    """(texts, single) from one MMS request: a JSON body {"text": str} or {"texts": [str, ...]}."""
    body = request.get("body")
    if body is None:
        body = request.get("data")
    if isinstance(body, (bytes, bytearray)):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError("the request body is not UTF-8")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            raise RequestError('expected a JSON body {"text": "..."} or {"texts": [...]}')
    if isinstance(body, dict) and isinstance(body.get("text"), str):
        return [body["text"]], True
    if isinstance(body, dict) and isinstance(body.get("texts"), list):
        for i, text in enumerate(body["texts"]):
            if not isinstance(text, str):
                raise RequestError("texts[%d]: expected a string, got %s" % (i, type(text).__name__))
        return list(body["texts"]), False
    raise RequestError('expected a JSON body {"text": "..."} or {"texts": [...]}')


def handle(data, context):
    """MMS entry point: called with data=None once at load, then with each batch of requests."""
    global _service
    if _service is None:
        properties = context.system_properties
        _service = KobertService(properties["model_dir"], properties.get("batch_size"))
    if data is None:
        return None
    return _service.handle(data, context)
''')
