"""`kobert package web DIR --out WEBDIR`: a static page that runs an export's fp32 ONNX in the browser.

    WEBDIR/
      index.html, app.js     the page: a text box, the predicted label, a bar per label
      kobert.js              texts -> kobert's ids -> model -> logits / embeddings (also runs in Node)
      kobert-web.json        what the page needs to know: head, labels, max length, special ids
      model/model.onnx       the export's "onnx" artifact (sha256-checked against its manifest)
      model/tokenizer.json   the export's tokenizer, read by transformers.js
      lib/ort/               onnxruntime-web's wasm build (ort.wasm.min.mjs and its .mjs/.wasm)
      lib/transformers/      transformers.js (its tokenizers only; the model runs on lib/ort)
      serve.py               python3 serve.py: a static server with the COOP/COEP headers

The page exposes `window.kobert.run(texts)` -> `{input_ids, logits, probabilities,
labels}` (a classifier) or `{input_ids, embeddings}` (an encoder: the [CLS] vector).

The JavaScript libraries are copied from `web/node_modules` (made by `npm ci` in
web/, see ci/setup.sh, pinned by web/package-lock.json), or from
$KOBERT_WEB_NODE_MODULES.

Served without COOP/COEP (any static host) the page still works, on one wasm
thread: cross-origin isolation is what lets onnxruntime-web use several.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from kobert.config import KoBertConfig
from kobert.runtimes.base import inside, read_manifest, verify_files
from kobert.staging import move_into_place, staging_folder, write_json
from kobert.tokenizer import portable_tokenizer_config

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "web"
PAGE_FILES = ("index.html", "app.js", "kobert.js", "serve.py")
# What the page loads from node_modules: onnxruntime-web's wasm-only build and transformers.js's bundle.
LIBRARIES = {
    "lib/ort": ("onnxruntime-web/dist", ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs",
                                          "ort-wasm-simd-threaded.wasm")),
    "lib/transformers": ("@huggingface/transformers/dist", ("transformers.min.js",)),
}
NODE_MODULES_ENV = "KOBERT_WEB_NODE_MODULES"
MARKER = "kobert-web.json"  # every web package has it; only such a folder is ever replaced
SUPPORTED_HEADS = ("sequence_classification", "none")


class WebPackageError(ValueError):
    """The web package could not be built; nothing was written at the destination."""


def build(export_dir: Path, out: Path) -> Path:
    export_dir, out = Path(export_dir), Path(out).absolute()
    manifest = read_manifest(export_dir)
    config = KoBertConfig.from_hf_dict(manifest.get("config"), source=f"{export_dir}/manifest.json")
    if config.head not in SUPPORTED_HEADS:
        raise WebPackageError(f"{export_dir}: a {config.head} head; the web page runs sequence classifiers "
                              "and bare encoders")
    model = _checked_model(export_dir, manifest)
    tokenizer_dir = _checked_tokenizer(export_dir, manifest)
    node_modules = find_node_modules()
    check_destination(out)

    with staging_folder(out, WebPackageError, "the web package") as staging:
        _write_package(staging, model, tokenizer_dir, node_modules)
        write_json(staging / MARKER, page_settings(config, tokenizer_dir, manifest, node_modules))
        move_into_place(staging, out)
    return out


def _write_package(folder: Path, model: Path, tokenizer_dir: Path, node_modules: Path) -> None:
    """The page, the model with its tokenizer under model/, and the libraries under lib/."""
    for name in PAGE_FILES:
        shutil.copyfile(ASSETS / name, folder / name)
    (folder / "model").mkdir()
    shutil.copyfile(model, folder / "model" / "model.onnx")
    shutil.copyfile(tokenizer_dir / "tokenizer.json", folder / "model" / "tokenizer.json")
    write_json(folder / "model" / "tokenizer_config.json",
                portable_tokenizer_config(tokenizer_dir / "tokenizer_config.json"))
    for target, (source, names) in LIBRARIES.items():
        (folder / target).mkdir(parents=True)
        for name in names:
            shutil.copyfile(node_modules / source / name, folder / target / name)


def page_settings(config: KoBertConfig, tokenizer_dir: Path, manifest: dict, node_modules: Path) -> dict:
    """kobert-web.json: the same max length and special ids as kobert's TextEncoder uses."""
    from kobert.encoding import TextEncoder

    encoder = TextEncoder(tokenizer_dir, config.max_position_embeddings, config.vocab_size)
    special = {name: encoder.backend.token_to_id(token)
               for name, token in (("cls", "[CLS]"), ("sep", "[SEP]"), ("pad", "[PAD]"))}
    missing = [token for token, value in special.items() if value is None]
    if missing:
        raise WebPackageError(f"{tokenizer_dir}/tokenizer.json: no {', '.join(missing)} token")
    return {
        "kobert_web_package": 1,
        "source": manifest.get("source"),
        "head": config.head,
        "labels": config.label_names,
        "max_length": encoder.max_length,
        "special_ids": special,
        "hidden_size": config.hidden_size,
        "layers": config.num_hidden_layers,
        "versions": {name: _package_version(node_modules / name)
                     for name in ("onnxruntime-web", "@huggingface/transformers")},
    }


def find_node_modules() -> Path:
    """$KOBERT_WEB_NODE_MODULES, else the repository's web/node_modules."""
    explicit = os.environ.get(NODE_MODULES_ENV)
    folder = Path(explicit) if explicit else Path(__file__).resolve().parents[2] / "web" / "node_modules"
    missing = [f"{source}/{name}" for source, names in LIBRARIES.values() for name in names
               if not (folder / source / name).is_file()]
    if missing:
        raise WebPackageError(f"{folder}: no {missing[0]} (run `npm ci` in web/, as ci/setup.sh does, "
                              f"or set {NODE_MODULES_ENV})")
    return folder


def check_destination(out: Path) -> None:
    """Only a free path, an empty folder or an earlier web package of ours may be written."""
    if out.exists() and not out.is_dir():
        raise WebPackageError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not is_web_package(out):
        raise WebPackageError(f"{out}: exists, is not empty and is not a kobert web package (no {MARKER}); "
                              "left untouched")


def is_web_package(folder: Path) -> bool:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8")).get("kobert_web_package") == 1
    except (OSError, ValueError, AttributeError):
        return False


def _checked_model(export_dir: Path, manifest: dict) -> Path:
    entry = manifest["artifacts"].get("onnx")
    if not isinstance(entry, dict) or not entry.get("files"):
        raise WebPackageError(f"{export_dir}: no 'onnx' artifact (export with --to onnx)")
    verify_files(export_dir, entry, "artifact 'onnx'")
    return inside(export_dir, entry["files"][0])


def _checked_tokenizer(export_dir: Path, manifest: dict) -> Path:
    name = manifest.get("tokenizer")
    if not name:
        raise WebPackageError(f"{export_dir}: the export has no tokenizer (export with --tokenizer PATH)")
    verify_files(export_dir, {"files": [name], "sha256": manifest.get("tokenizer_sha256")}, "the tokenizer")
    return inside(export_dir, name)


def _package_version(folder: Path) -> str | None:
    try:
        return json.loads((folder / "package.json").read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        return None
