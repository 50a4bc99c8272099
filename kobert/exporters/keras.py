"""KoBERT as a Keras 3 model of stock Keras / KerasHub classes, saved as one `.keras` file, and back.

A TensorFlow team fine-tunes here (`--to keras`): the file loads with

    import keras_hub  # registers KerasHub's classes; before the load
    model = keras.saving.load_model("keras/model.keras")
    model.predict(np.array(["정말 재밌어요"], dtype=object))  # a sequence classifier: logits (n, labels)

in a process with only tensorflow, tensorflow-text, keras and keras-hub: no kobert, no custom_objects.

The backbone is a functional `keras.Model` named "backbone" with the layers, names and inputs of
KerasHub's `BertBackbone` (`token_ids`, `segment_ids`, `padding_mask` -> `sequence_output`,
`pooled_output`), built from KerasHub's `TransformerEncoder` with the exact erf GELU. `BertBackbone`
itself hard-codes the tanh-approximate GELU; on the shipped model that moves the outputs past the fp32
gate (figures in docs/deploy/keras.md), so it is not used. The task model:

- sequence_classification: `keras_hub.models.BertTextClassifier` (dropout, then the `logits` Dense on
  `pooled_output`, as transformers) with a `keras_hub.models.TextClassifierPreprocessor` attached, so
  `predict`, `fit` and `evaluate` take raw strings (or (text, text_pair) tuples);
- token_classification, question_answering, none: a functional model on the ids (`logits`;
  `start_logits`, `end_logits`; the backbone's outputs), with the preprocessor's tokenizer saved beside
  it as `tokenizer.model`.

The tokenizer: KerasHub's `DebertaV3Tokenizer` (SentencePiece, `[CLS] [SEP] [PAD] [MASK]`) on a
SentencePiece model rewritten so its piece ids are KoBERT's (`kobert_ids_model`): the five specials,
then the NORMAL pieces in code-point order, exactly `kobert.tokenizer.kobert_vocab`. No id map is
needed, and kobert's tokenizer reads the rewritten model back to the same vocabulary.

Weights go in and out by one table (`KERAS_NAMES`, canonical name -> Keras variable path), so the
round trip canonical -> Keras -> canonical is bit-exact and `import_keras` is this file's mirror.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kobert.canonical import CanonicalWeights, weight_table
from kobert.config import INPUT_NAMES, KoBertConfig
from kobert.exporters import ExportedArtifact
from kobert.runtimes.tf_logging import import_tensorflow
from kobert.tokenizer import SPECIAL_TOKENS

tf = import_tensorflow()
try:
    import keras
    import keras_hub
except ImportError:
    raise ImportError("the keras target needs keras and keras-hub: pip install 'kobert[keras]' "
                      "(keras-hub --no-deps beside tensorflow-cpu; see ci/setup.sh)") from None

NAME = "keras"
MODEL_FILE = "model.keras"
TOKENIZER_FILE = "tokenizer.model"  # the rewritten SentencePiece model: piece id = KoBERT id
CONFIG_FILE = "config.json"  # the Hugging Face config (labels), for `kobert import keras`
# A sequence classifier is also written as a KerasHub preset folder (task.json, config.json, metadata.json,
# model.weights.h5, task.weights.h5, preprocessor.json, tokenizer.json, assets/), by KerasHub's own
# `save_to_preset`: `keras_hub.models.BertTextClassifier.from_preset("keras/preset")` loads the same model
# (the functional exact-GELU backbone, no BertBackbone). The other heads are functional models, not KerasHub
# Tasks, and `Backbone.from_preset` refuses a functional backbone: they ship the .keras file only.
PRESET_DIR = "preset"
BACKBONE = "backbone"
# KerasHub's input names, in kobert's input order (input_ids, attention_mask, token_type_ids).
KERAS_INPUTS = dict(zip(INPUT_NAMES, ("token_ids", "padding_mask", "segment_ids")))
DROPOUT = 0.1  # transformers' hidden and attention dropout for BERT; Keras applies it in fit only

# canonical name -> Keras variable path (`variable.path`); Keras keeps attention kernels as
# (hidden, heads, head_size) and (heads, head_size, hidden): the same bytes, reshaped.
KERAS_NAMES = {
    "embeddings.word": "token_embedding/embeddings",
    "embeddings.position": "position_embedding/embeddings",
    "embeddings.token_type": "segment_embedding/embeddings",
    "embeddings.norm.gamma": "embeddings_layer_norm/gamma",
    "embeddings.norm.beta": "embeddings_layer_norm/beta",
    **{f"layer.{{i}}.attention.{part}.{kind}": f"transformer_layer_{{i}}/self_attention_layer/{part}/{kind}"
       for part in ("query", "key", "value") for kind in ("kernel", "bias")},
    "layer.{i}.attention.output.kernel": "transformer_layer_{i}/self_attention_layer/attention_output/kernel",
    "layer.{i}.attention.output.bias": "transformer_layer_{i}/self_attention_layer/attention_output/bias",
    "layer.{i}.attention.norm.gamma": "transformer_layer_{i}/self_attention_layer_norm/gamma",
    "layer.{i}.attention.norm.beta": "transformer_layer_{i}/self_attention_layer_norm/beta",
    "layer.{i}.ffn.up.kernel": "transformer_layer_{i}/feedforward_intermediate_dense/kernel",
    "layer.{i}.ffn.up.bias": "transformer_layer_{i}/feedforward_intermediate_dense/bias",
    "layer.{i}.ffn.down.kernel": "transformer_layer_{i}/feedforward_output_dense/kernel",
    "layer.{i}.ffn.down.bias": "transformer_layer_{i}/feedforward_output_dense/bias",
    "layer.{i}.ffn.norm.gamma": "transformer_layer_{i}/feedforward_layer_norm/gamma",
    "layer.{i}.ffn.norm.beta": "transformer_layer_{i}/feedforward_layer_norm/beta",
    "pooler.kernel": "pooled_dense/kernel",
    "pooler.bias": "pooled_dense/bias",
    "head.kernel": "logits/kernel",
    "head.bias": "logits/bias",
}


def keras_path(canonical: str) -> str:
    """The Keras variable path of a canonical tensor (`KERAS_NAMES`, with the layer index filled in)."""
    parts = canonical.split(".")
    if parts[0] == "layer":
        pattern = KERAS_NAMES[".".join(["layer", "{i}", *parts[2:]])]
        return pattern.format(i=parts[1])
    return KERAS_NAMES[canonical]


class KerasModelError(ValueError):
    """A Keras model is not one `kobert import keras` can read back (the message names what is missing)."""


# --- the model -------------------------------------------------------------------------------


def build_backbone(config: KoBertConfig, exact_gelu: bool = True, dropout: float = DROPOUT) -> keras.Model:
    """BertBackbone's graph from stock layers; `exact_gelu=False` gives KerasHub's own BertBackbone (tanh GELU)."""
    sizes = dict(num_heads=config.num_attention_heads, intermediate_dim=config.intermediate_size)
    if not exact_gelu:
        return keras_hub.models.BertBackbone(
            vocabulary_size=config.vocab_size, num_layers=config.num_hidden_layers, hidden_dim=config.hidden_size,
            max_sequence_length=config.max_position_embeddings, num_segments=config.type_vocab_size,
            dropout=dropout, name=BACKBONE, **sizes)
    inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name)
              for name in ("token_ids", "segment_ids", "padding_mask")}
    tokens = keras.layers.Embedding(config.vocab_size, config.hidden_size, name="token_embedding")(inputs["token_ids"])
    positions = keras_hub.layers.PositionEmbedding(config.max_position_embeddings, name="position_embedding")(tokens)
    segments = keras.layers.Embedding(config.type_vocab_size, config.hidden_size,
                                      name="segment_embedding")(inputs["segment_ids"])
    x = keras.layers.Add(name="embeddings_add")([tokens, positions, segments])
    x = keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name="embeddings_layer_norm")(x)
    x = keras.layers.Dropout(dropout, name="embeddings_dropout")(x)
    for i in range(config.num_hidden_layers):
        # "gelu" is keras.activations.gelu, approximate=False: transformers' erf GELU.
        x = keras_hub.layers.TransformerEncoder(activation="gelu", dropout=dropout,
                                                layer_norm_epsilon=config.layer_norm_eps,
                                                name=f"transformer_layer_{i}", **sizes)(
            x, padding_mask=inputs["padding_mask"])
    outputs = {"sequence_output": x}
    if config.has_pooler:
        outputs["pooled_output"] = keras.layers.Dense(config.hidden_size, activation="tanh",
                                                      name="pooled_dense")(x[:, 0, :])
    return keras.Model(inputs=inputs, outputs=outputs, name=BACKBONE)


def build_task_model(config: KoBertConfig, backbone: keras.Model, preprocessor=None,
                     dropout: float = DROPOUT) -> keras.Model:
    """The checkpoint's head on the backbone, as transformers' `BertFor...` (see the module docstring)."""
    if config.head == "sequence_classification":
        return keras_hub.models.BertTextClassifier(backbone, config.num_labels, preprocessor=preprocessor,
                                                   dropout=dropout, name="kobert_classifier")
    inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in backbone.input}
    encoded = backbone(inputs)
    if config.head == "none":
        return keras.Model(inputs, encoded, name="kobert")
    x = encoded["sequence_output"]
    if config.head == "token_classification":
        x = keras.layers.Dropout(dropout, name="classifier_dropout")(x)
        return keras.Model(inputs, {"logits": keras.layers.Dense(config.num_labels, name="logits")(x)},
                           name="kobert_token_classifier")
    # question answering: transformers' one qa_outputs layer (no dropout before it), split into start and end
    scores = keras.layers.Dense(config.num_labels, name="logits")(x)
    return keras.Model(inputs, {"start_logits": scores[..., 0], "end_logits": scores[..., 1]}, name="kobert_qa")


def set_weights(model: keras.Model, weights: CanonicalWeights) -> None:
    """Every canonical tensor into its Keras variable (`KERAS_NAMES`), reshaped, never re-valued."""
    variables = {v.path: v for v in model.weights}
    for name, array in weights.tensors.items():
        variable = variables[keras_path(name)]
        variable.assign(array.reshape(variable.shape))
    unset = sorted(set(variables) - {keras_path(name) for name in weights.tensors})
    if unset:  # a layer this table does not know would keep its random initial values
        raise KerasModelError(f"Keras variables with no canonical tensor: {', '.join(unset[:5])}")


def canonical_tensors(model: keras.Model, config: KoBertConfig, where: str) -> dict[str, np.ndarray]:
    """The canonical tensors of a Keras model built by `build_task_model` (the mirror of `set_weights`)."""
    variables = {v.path: v for v in model.weights}
    tensors = {}
    for name, _, shape, _ in weight_table(config):
        variable = variables.get(keras_path(name))
        if variable is None:
            raise KerasModelError(f"{where}: no Keras variable {keras_path(name)} (for {name})")
        array = np.asarray(variable.numpy())
        if array.size != int(np.prod(shape)):
            raise KerasModelError(f"{where}: {keras_path(name)}: shape {array.shape}, {name} is {shape}")
        tensors[name] = np.ascontiguousarray(array.reshape(shape).astype(np.float32, copy=False))
    return tensors


# --- the tokenizer ---------------------------------------------------------------------------


def kobert_ids_model(model_bytes: bytes, where: str) -> bytes:
    """The SentencePiece model with its pieces reordered to KoBERT's ids (`kobert.tokenizer.kobert_vocab`).

    Pieces 0-4 become `[UNK]` (the unknown piece) and `[PAD] [CLS] [SEP] [MASK]` (control pieces, never
    produced from text); the NORMAL pieces follow in code-point order with their scores. Any other
    piece type (user-defined, byte) would change what the model produces, so it is refused.
    """
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(model_bytes)
    except Exception as e:  # protobuf raises DecodeError or RuntimeError depending on backend
        raise KerasModelError(f"{where}: not a SentencePiece model ({e})") from None
    normal, unknown, control = 1, 2, 3  # ModelProto.SentencePiece.Type
    kept_first = [p.piece for p in proto.pieces[:len(SPECIAL_TOKENS)]] == list(SPECIAL_TOKENS)
    rest = proto.pieces[len(SPECIAL_TOKENS):] if kept_first else proto.pieces
    others = [p.piece for p in rest if p.type not in ((normal,) if kept_first else (normal, unknown, control))]
    if others:
        raise KerasModelError(f"{where}: pieces of a type KerasHub's tokenizer would treat differently: {others[:3]}")
    pieces = list(rest) if kept_first else sorted((p for p in rest if p.type == normal), key=lambda p: p.piece)
    rewritten = sentencepiece_model_pb2.ModelProto()
    rewritten.CopyFrom(proto)
    del rewritten.pieces[:]
    for token in SPECIAL_TOKENS:
        rewritten.pieces.add(piece=token, score=0.0, type=unknown if token == "[UNK]" else control)
    for piece in pieces:
        rewritten.pieces.add(piece=piece.piece, score=piece.score, type=normal)
    spec = rewritten.trainer_spec
    spec.unk_id, spec.pad_id, spec.bos_id, spec.eos_id = (SPECIAL_TOKENS.index(t) for t in ("[UNK]", "[PAD]", "[CLS]", "[SEP]"))
    spec.unk_piece, spec.pad_piece, spec.bos_piece, spec.eos_piece = "[UNK]", "[PAD]", "[CLS]", "[SEP]"
    return rewritten.SerializeToString()


def build_preprocessor(model_bytes: bytes, max_length: int):
    """Raw strings (or (text, text_pair)) -> token_ids, padding_mask, segment_ids, padded to `max_length`."""
    tokenizer = keras_hub.models.DebertaV3Tokenizer(proto=model_bytes)
    # the base class: DebertaV3TextClassifierPreprocessor drops segment_ids, which BERT reads
    return keras_hub.models.TextClassifierPreprocessor(tokenizer, sequence_length=max_length)


# --- export ----------------------------------------------------------------------------------


def export(weights: CanonicalWeights, export_dir: Path) -> ExportedArtifact:
    """Write `export_dir/keras/`: model.keras (the task model), tokenizer.model, config.json (and preset/)."""
    from kobert.encoding import TextEncoder
    from kobert.exporters.tf_text import check_against_tokenizer_json, read_sentencepiece_model

    export_dir = Path(export_dir)
    tokenizer_dir = export_dir / "tokenizer"
    model_bytes = read_sentencepiece_model(export_dir)
    where = str(tokenizer_dir / TOKENIZER_FILE)
    model_bytes = kobert_ids_model(model_bytes, where)
    # piece id = KoBERT id for every piece, or the rewrite (or the tokenizer) is not kobert's
    check_against_tokenizer_json(np.arange(_piece_count(model_bytes)), model_bytes,
                                 tokenizer_dir, where)
    max_length = TextEncoder(tokenizer_dir, weights.config.max_position_embeddings).max_length
    config = weights.config
    backbone = build_backbone(config)
    preprocessor = build_preprocessor(model_bytes, max_length) if config.head == "sequence_classification" else None
    model = build_task_model(config, backbone, preprocessor)
    set_weights(model, weights)
    folder = export_dir / NAME
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / MODEL_FILE)
    (folder / TOKENIZER_FILE).write_bytes(model_bytes)
    (folder / CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")
    files = [f"{NAME}/{MODEL_FILE}", f"{NAME}/{TOKENIZER_FILE}", f"{NAME}/{CONFIG_FILE}"]  # the .keras file first
    if isinstance(model, keras_hub.models.Task):
        model.save_to_preset(str(folder / PRESET_DIR))
        files.append(f"{NAME}/{PRESET_DIR}")
    return ExportedArtifact(
        name=NAME,
        files=files,
        inputs=[{"name": n, "dtype": "int32", "keras_name": KERAS_INPUTS[n]} for n in INPUT_NAMES],
        outputs=list(config.output_names),
        framework=framework_versions(),
        extra={"max_length": max_length, "text_inputs": preprocessor is not None},
    )


def _piece_count(model_bytes: bytes) -> int:
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_proto=model_bytes).get_piece_size()


# --- import: a (fine-tuned) Keras model back to canonical weights ------------------------------


def model_file_of(path: Path) -> Path:
    """The .keras file `path` names: the file itself, a `keras/` artifact folder, or an export holding one."""
    path = Path(path)
    for candidate in (path, path / MODEL_FILE, path / NAME / MODEL_FILE):
        if candidate.is_file() and candidate.suffix == ".keras":
            return candidate
    raise KerasModelError(f"{path}: no .keras file (give the model.keras a `--to keras` export wrote, "
                          "or the model a Keras user saved with model.save(...keras))")


def read_keras(path: str | Path) -> tuple[CanonicalWeights, bytes | None, Path]:
    """(canonical weights, the SentencePiece model with KoBERT ids or None, the .keras file) of a Keras model."""
    model_file = model_file_of(Path(path))
    model = keras.saving.load_model(model_file, compile=False)
    where = str(model_file)
    config = infer_config(model, _labels_beside(model_file), where)
    weights = CanonicalWeights(config, canonical_tensors(model, config, where))
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is not None:
        proto = preprocessor.tokenizer.proto
    elif (model_file.parent / TOKENIZER_FILE).is_file():
        proto = (model_file.parent / TOKENIZER_FILE).read_bytes()
    else:
        proto = None
    return weights, proto, model_file


def _labels_beside(model_file: Path) -> dict[int, str]:
    """id2label of the config.json the export wrote beside the file (the labels are not in the .keras)."""
    config_file = model_file.parent / CONFIG_FILE
    if not config_file.is_file():
        return {}
    return KoBertConfig.from_file(config_file).id2label


def _head_of(model: keras.Model, where: str) -> tuple[str, int]:
    """(head, num_labels) from the task model's structure (see `build_task_model`)."""
    names = {layer.name for layer in model.layers}
    if "logits" not in names:
        return "none", 0
    num_labels = int(model.get_layer("logits").kernel.shape[-1])
    if isinstance(model, keras_hub.models.BertTextClassifier):
        return "sequence_classification", num_labels
    outputs = model.output if isinstance(model.output, dict) else {}
    if "start_logits" in outputs:
        return "question_answering", num_labels
    if "logits" in outputs:
        return "token_classification", num_labels
    raise KerasModelError(f"{where}: a `logits` layer, but not a head kobert knows (built by `kobert export --to keras`?)")


def infer_config(model: keras.Model, id2label: dict[int, str], where: str) -> KoBertConfig:
    """The KoBertConfig of a model `build_task_model` built, from its layers' shapes and settings."""
    try:
        backbone = model.get_layer(BACKBONE)
        embedding = backbone.get_layer("token_embedding").embeddings
        layers = [layer for layer in backbone.layers if layer.name.startswith("transformer_layer_")]
        first = layers[0]
    except (ValueError, IndexError, AttributeError) as e:
        raise KerasModelError(f"{where}: not a KoBERT Keras model (no {BACKBONE} with KerasHub BERT layers: {e})") from None
    head, num_labels = _head_of(model, where)
    return KoBertConfig(
        vocab_size=int(embedding.shape[0]), hidden_size=int(embedding.shape[1]), num_hidden_layers=len(layers),
        num_attention_heads=int(first.num_heads), intermediate_size=int(first.intermediate_dim),
        max_position_embeddings=int(backbone.get_layer("position_embedding").sequence_length),
        type_vocab_size=int(backbone.get_layer("segment_embedding").input_dim),
        layer_norm_eps=float(backbone.get_layer("embeddings_layer_norm").epsilon), head=head, num_labels=num_labels,
        id2label={i: name for i, name in id2label.items() if i < num_labels})


def framework_versions() -> str:
    return f"keras {keras.__version__}, keras-hub {keras_hub.__version__}, tensorflow {tf.__version__}"
