"""A Hugging Face model folder around the fp32 ONNX: what Optimum and transformers.js load unchanged.

    hf-onnx/
      config.json               transformers' BertConfig (architectures, id2label/label2id)
      tokenizer.json            the export's Rust `tokenizers` pipeline
      tokenizer_config.json     tokenizer_class PreTrainedTokenizerFast (transformers 4.x and 5.x)
      special_tokens_map.json
      onnx/model.onnx           the "onnx" artifact (fp32)
      onnx/model_quantized.onnx the "onnx-int8" artifact, only when it is exported too

Optimum's `ORTModelFor*.from_pretrained(folder)` finds `onnx/model.onnx` by its
standard name; transformers.js reads `onnx/model.onnx` for dtype "fp32" (its
Node default) and `onnx/model_quantized.onnx` for "q8" (its browser default).
The quantized copy is taken when `export_dir/onnx-int8/model.onnx` exists at
build time: the registry builds onnx-int8 before this target, so
`--to onnx-int8,hf-onnx` gives both files and `--to hf-onnx` the fp32 one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kobert.canonical import CanonicalWeights
from kobert.config import INPUTS
from kobert.exporters import ExportedArtifact

FOLDER = "hf-onnx"
SPECIAL_TOKEN_KEYS = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# Keys transformers 5 writes that describe the saving session, not the tokenizer.
SESSION_KEYS = ("backend", "is_local", "local_files_only")


def export(weights: CanonicalWeights, export_dir: Path) -> ExportedArtifact:
    export_dir = Path(export_dir)
    fp32 = export_dir / "onnx" / "model.onnx"
    if not fp32.is_file():
        raise FileNotFoundError(f"{fp32}: no fp32 ONNX here; export the 'onnx' artifact first")
    tokenizer_dir = export_dir / "tokenizer"
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise ValueError(f"{export_dir}: hf-onnx needs the export's tokenizer (export with --tokenizer PATH), "
                         "since Hugging Face clients load the tokenizer from the same folder")
    target = export_dir / FOLDER
    (target / "onnx").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(fp32, target / "onnx" / "model.onnx")
    int8 = export_dir / "onnx-int8" / "model.onnx"
    files = ["onnx/model.onnx"]
    if int8.is_file():
        shutil.copyfile(int8, target / "onnx" / "model_quantized.onnx")
        files.append("onnx/model_quantized.onnx")

    config = weights.config.to_hf_dict()
    if not int8.is_file():
        # transformers.js in a browser (wasm) asks for the q8 file unless told otherwise.
        config["transformers.js_config"] = {"dtype": "fp32"}
    _write_json(target / "config.json", config)
    shutil.copyfile(tokenizer_dir / "tokenizer.json", target / "tokenizer.json")
    tokenizer_config = portable_tokenizer_config(tokenizer_dir / "tokenizer_config.json")
    _write_json(target / "tokenizer_config.json", tokenizer_config)
    _write_json(target / "special_tokens_map.json",
                {key: tokenizer_config[key] for key in SPECIAL_TOKEN_KEYS if key in tokenizer_config})
    return ExportedArtifact(
        name=FOLDER,
        files=[FOLDER],
        inputs=[{"name": name, "dtype": dtype} for name, dtype in INPUTS],
        outputs=list(weights.config.output_names),
        framework="Hugging Face layout (Optimum, transformers.js)",
        extra={"onnx_files": files},
    )


def portable_tokenizer_config(path: Path) -> dict:
    """The tokenizer_config.json that transformers 4.x and 5.x both read.

    transformers 5's save_pretrained names the class `TokenizersBackend`, which 4.x
    does not know; `PreTrainedTokenizerFast` is the same tokenizer.json in both.
    """
    try:
        config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    config = {key: value for key, value in config.items() if key not in SESSION_KEYS}
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    # The Metaspace decoder already places spaces; 4.x would otherwise warn about this default.
    config.setdefault("clean_up_tokenization_spaces", False)
    return config


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
