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

import shutil
from pathlib import Path

from kobert.canonical import CanonicalWeights
from kobert.config import INPUTS
from kobert.exporters import ExportedArtifact
from kobert.staging import write_json
from kobert.tokenizer import portable_tokenizer_config

FOLDER = "hf-onnx"
SPECIAL_TOKEN_KEYS = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


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
    write_json(target / "config.json", config)
    shutil.copyfile(tokenizer_dir / "tokenizer.json", target / "tokenizer.json")
    tokenizer_config = portable_tokenizer_config(tokenizer_dir / "tokenizer_config.json")
    write_json(target / "tokenizer_config.json", tokenizer_config)
    write_json(target / "special_tokens_map.json",
                {key: tokenizer_config[key] for key in SPECIAL_TOKEN_KEYS if key in tokenizer_config})
    return ExportedArtifact(
        name=FOLDER,
        files=[FOLDER],
        inputs=[{"name": name, "dtype": dtype} for name, dtype in INPUTS],
        outputs=list(weights.config.output_names),
        framework="Hugging Face layout (Optimum, transformers.js)",
        extra={"onnx_files": files},
    )
