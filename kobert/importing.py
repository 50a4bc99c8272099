"""`kobert import FRAMEWORK MODEL --out DIR`: a model trained elsewhere, back to a canonical checkpoint.

The checkpoint is what every other command reads (config.json with id2label, model.safetensors,
the tokenizer), so an imported model exports to every target with parity. The framework's spoke
reads the model (`kobert.exporters.keras.read_keras`, the mirror of its export, one naming table);
this module writes, framework-free, and records where the weights came from in `PROVENANCE_FILE`,
which `kobert.checkpoint.load_checkpoint` reads into the export manifest's `source`.
"""

from __future__ import annotations

import json
from pathlib import Path

from kobert.checkpoint import PROVENANCE_FILE, save_hf_checkpoint, sha256_file

# framework -> "module:function", function(path) -> (CanonicalWeights, SentencePiece model bytes | None, file read)
IMPORTERS = {"keras": "kobert.exporters.keras:read_keras"}
VERSIONS = {"keras": "kobert.exporters.keras:framework_versions"}


def import_model(framework: str, model: str | Path, out: str | Path, force: bool = False) -> Path:
    """Write `out`: a Hugging Face checkpoint (+ tokenizer, + provenance) of a model saved by `framework`."""
    from kobert.registry import load_function
    from kobert.staging import move_into_place, staging_folder

    if framework not in IMPORTERS:
        raise ValueError(f"cannot import from {framework!r}; expected one of {', '.join(IMPORTERS)}")
    out = Path(out).absolute()
    check_out(out, force)
    weights, sentencepiece_model, model_file = load_function(IMPORTERS[framework])(model)
    with staging_folder(out, ValueError, "the checkpoint") as staging:
        save_hf_checkpoint(weights, staging)
        if sentencepiece_model is not None:
            _write_tokenizer(sentencepiece_model, staging, weights.config.vocab_size)
        provenance = {"imported_from": framework, "file": str(Path(model_file).absolute()),
                      "sha256": sha256_file(Path(model_file)), "framework": load_function(VERSIONS[framework])(),
                      "fingerprint": weights.fingerprint()}
        (staging / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        move_into_place(staging, out)
    return out


def check_out(out: Path, force: bool) -> None:
    """`out` must be free, or (with `force`) an earlier `kobert import` output; anything else is left untouched."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise ValueError(f"{out}: exists and is not empty (--force replaces an earlier `kobert import` output)")
    if not (out / PROVENANCE_FILE).is_file():
        raise ValueError(f"{out}: not an earlier `kobert import` output (no {PROVENANCE_FILE}); --force replaces "
                         "only that, so it was left untouched")


def _write_tokenizer(sentencepiece_model: bytes, folder: Path, vocab_size: int) -> None:
    """tokenizer.json and friends beside the weights, read from the model's SentencePiece model by kobert's rule."""
    from kobert.export import _write_tokenizer as write_export_tokenizer
    from kobert.tokenizer import SP_MODEL_NAMES

    model_file = folder / SP_MODEL_NAMES[0]
    model_file.write_bytes(sentencepiece_model)
    write_export_tokenizer(model_file, folder, vocab_size)
