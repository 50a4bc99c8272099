"""KoBERT as a SavedModel that takes raw text: SentencePiece, specials, truncation and padding in-graph.

TensorFlow teams send strings to a signature; this artifact (`--to tf-text`)
tokenizes inside the graph with tensorflow-text's SentencePiece op and then
runs the same BERT as the `tf` target (`kobert.exporters.tensorflow.KoBertTF`,
reused, not copied). Its signatures:

    serving_default(text: string [B])                    the text path, for users
    serving_pair(text: string [B], text_pair: string [B]) sentence pairs
    serving_ids(input_ids, attention_mask, token_type_ids) the `tf` target's id signature

The text signatures return the model's outputs (`config.output_names`) plus the
`input_ids`, `attention_mask` and `token_type_ids` (int64) they built, so a
caller can see what the model read. The restored object also has `tokenize`
and `tokenize_pair` (the ids alone). Loading needs only

    import tensorflow_text  # registers the SentencePiece ops; before the load
    tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(["한국어 문장"]))

What the graph reproduces, from kobert's tokenizer (`kobert.tokenizer`, `kobert.encoding.TextEncoder`):
- ids: KoBERT ids are not SentencePiece's. They are the 5 specials, then the
  NORMAL pieces sorted by code point (`kobert_vocab`); a constant map takes
  each SentencePiece id to its KoBERT id (`<unk>` to [UNK]=0).
- `[CLS] A [SEP]` and `[CLS] A [SEP] B [SEP]` with token type 1 on `B [SEP]`.
- "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]" written in a text are those tokens, and the
  text between them is tokenized piece by piece, as `tokenizers` does (`KoBertTextTF.kobert_ids`).
- truncation to `TextEncoder`'s length, min(model positions, the tokenizer's
  model_max_length), longest-first for pairs exactly as `tokenizers` does it.
- padding with [PAD]=1 to the longest row of the batch.
Normalisation is SentencePiece's own, inside the op. The ids equal kobert's
tokenizer's except where two orders of the same pieces score exactly the same
(see tests/test_tokenizer.py): there the two Viterbi implementations may pick
different orders.

The SentencePiece model is the export's `tokenizer/tokenizer.model` (the export
copies it there from the tokenizer source); before it is embedded it is checked
to give exactly the ids of the export's `tokenizer/tokenizer.json`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kobert.canonical import CanonicalWeights
from kobert.config import INPUT_NAMES
from kobert.exporters import ExportedArtifact
from kobert.exporters.tensorflow import KoBertTF
from kobert.progress import native_stderr_quieted
from kobert.runtimes.tf_logging import import_tensorflow
from kobert.tokenizer import SPECIAL_TOKENS, kobert_vocab

tf = import_tensorflow()  # quiet unless --verbose: a plain `import tensorflow` prints the oneDNN notice
try:
    with native_stderr_quieted():  # tensorflow_text's own library logs TensorFlow's start-up lines again
        import tensorflow_text
except ImportError:  # one line, with the install that works beside tensorflow-cpu
    raise ImportError("the tf-text target needs tensorflow-text: pip install --no-deps tensorflow-text==2.21.1 "
                      "(it requires `tensorflow`, which tensorflow-cpu already provides; see ci/setup.sh)") from None

NAME = "tf-text"
TOKENIZER_MODEL = Path("tokenizer") / "tokenizer.model"  # inside the export folder
TEXT_SIGNATURE, PAIR_SIGNATURE, IDS_SIGNATURE = "serving_default", "serving_pair", "serving_ids"
ID_OUTPUTS = INPUT_NAMES  # what the text signatures return besides the model's outputs


class SentencePieceFileError(ValueError):
    """The export has no usable SentencePiece model for the in-graph tokenizer."""


def kobert_id_map(model_bytes: bytes, where: str) -> np.ndarray:
    """int64 array: SentencePiece id -> KoBERT id (unknown, control and user pieces -> [UNK])."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(model_bytes)
    except Exception as e:  # protobuf raises DecodeError or RuntimeError depending on backend
        raise SentencePieceFileError(f"{where}: not a SentencePiece model ({e})") from None
    kobert_ids = {piece: i for i, (piece, _) in enumerate(kobert_vocab(proto))}
    unk = SPECIAL_TOKENS.index("[UNK]")
    normal = 1  # ModelProto.SentencePiece.Type.NORMAL
    return np.array([kobert_ids[p.piece] if p.type == normal else unk for p in proto.pieces], dtype=np.int64)


def check_against_tokenizer_json(id_map: np.ndarray, model_bytes: bytes, tokenizer_dir: Path, where: str) -> None:
    """Every piece must have the same id in tokenizer.json: else the graph would feed other ids than kobert."""
    import sentencepiece as spm
    from tokenizers import Tokenizer

    backend = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    processor = spm.SentencePieceProcessor(model_proto=model_bytes)
    for sp_id, kobert_id in enumerate(id_map):
        if processor.is_unknown(sp_id) or processor.is_control(sp_id):
            continue
        piece = processor.id_to_piece(sp_id)
        if backend.token_to_id(piece) != kobert_id:
            raise SentencePieceFileError(
                f"{where}: piece {piece!r} is KoBERT id {kobert_id} by this model but "
                f"{backend.token_to_id(piece)} in {tokenizer_dir / 'tokenizer.json'} (a different tokenizer)")


def longest_first(first_lengths, second_lengths, budget: int):
    """(kept A, kept B) per row: `tokenizers`' longest-first pair truncation to `budget` pieces.

    The shorter side keeps everything if that leaves the longer one at least as
    much; otherwise both get half, the longer side the odd piece (on a tie, B).
    """
    shorter = tf.minimum(first_lengths, second_lengths)
    keep_shorter = tf.where(2 * shorter <= budget, shorter, budget // 2)
    keep_longer = budget - keep_shorter
    first_longer = first_lengths > second_lengths
    fits = first_lengths + second_lengths <= budget
    keep_first = tf.where(fits, first_lengths, tf.where(first_longer, keep_longer, keep_shorter))
    keep_second = tf.where(fits, second_lengths, tf.where(first_longer, keep_shorter, keep_longer))
    return keep_first, keep_second


def _cut(pieces: tf.RaggedTensor, keep) -> tf.RaggedTensor:
    return tf.RaggedTensor.from_tensor(pieces.to_tensor(), lengths=tf.minimum(pieces.row_lengths(), keep))


class KoBertTextTF(tf.Module):
    """KoBertTF behind an in-graph KoBERT tokenizer; its tf.functions are the SavedModel's signatures."""

    def __init__(self, weights: CanonicalWeights, model_bytes: bytes, id_map: np.ndarray, max_length: int):
        super().__init__(name="kobert_text")
        self.bert = KoBertTF(weights)
        self.sentencepiece = tensorflow_text.SentencepieceTokenizer(model=model_bytes, out_type=tf.int32)
        self.id_map = tf.constant(id_map, dtype=tf.int64)
        self.max_length = max_length
        self.cls, self.sep, self.pad = (SPECIAL_TOKENS.index(t) for t in ("[CLS]", "[SEP]", "[PAD]"))

    def kobert_ids(self, text, specials: tuple[str, ...] = SPECIAL_TOKENS) -> tf.RaggedTensor:
        """KoBERT ids per text, reading "[CLS]", "[SEP]", ... in the text as those tokens, as `tokenizers` does.

        kobert's tokenizer.json (like every BERT tokenizer in transformers) matches its special tokens
        in the raw text and tokenizes the pieces between them on their own. Here: split on one special
        at a time (`tf.strings.split`, which keeps NUL bytes, unlike tensorflow-text's regex_split),
        then put that special's id between the pieces. No special overlaps another ("[" ... "]"), so
        splitting one after the other matches them as `tokenizers` does, leftmost first.
        """
        if not specials:
            pieces = self.sentencepiece.tokenize(text)
            return tf.ragged.map_flat_values(lambda ids: tf.gather(self.id_map, ids), pieces)
        segments = tf.strings.split(text, specials[0])  # [texts, segments]: "a[SEP]b" -> "a", "b"
        ids = self.kobert_ids(segments.flat_values, specials[1:])  # [segments, pieces]
        # The special follows every segment but a text's last (a text has at least one segment, maybe "").
        last = tf.scatter_nd(segments.row_splits[1:, None] - 1, tf.ones_like(segments.row_lengths()),
                             tf.shape(segments.flat_values, out_type=tf.int64))
        follows = 1 - last
        special_id = SPECIAL_TOKENS.index(specials[0])
        between = tf.RaggedTensor.from_row_lengths(tf.fill([tf.reduce_sum(follows)], tf.constant(special_id, tf.int64)),
                                                   follows)
        joined = tf.concat([ids, between], axis=1)
        return segments.with_flat_values(joined).merge_dims(1, 2)

    def special(self, token: int, like: tf.RaggedTensor) -> tf.RaggedTensor:
        """One `token` per row, as a ragged column to concatenate."""
        column = tf.fill(tf.stack([like.nrows(), 1]), tf.constant(token, tf.int64))
        return tf.RaggedTensor.from_tensor(column, row_splits_dtype=like.row_splits.dtype)

    def arrays(self, parts: list[tf.RaggedTensor], types: list[int]) -> dict[str, tf.Tensor]:
        """Ragged segments -> padded int64 input_ids, attention_mask, token_type_ids."""
        ids = tf.concat(parts, axis=1)
        token_types = tf.concat([tf.ones_like(p) * t for p, t in zip(parts, types)], axis=1)
        input_ids = ids.to_tensor(default_value=self.pad)
        width = tf.shape(input_ids, out_type=tf.int64)[1]
        return {"input_ids": input_ids,
                "attention_mask": tf.sequence_mask(ids.row_lengths(), width, dtype=tf.int64),
                "token_type_ids": token_types.to_tensor(default_value=0)}

    def encode(self, text) -> dict[str, tf.Tensor]:
        first = self.kobert_ids(text)[:, :self.max_length - 2]
        return self.arrays([self.special(self.cls, first), first, self.special(self.sep, first)], [0, 0, 0])

    def encode_pair(self, text, text_pair) -> dict[str, tf.Tensor]:
        first, second = self.kobert_ids(text), self.kobert_ids(text_pair)
        keep_first, keep_second = longest_first(first.row_lengths(), second.row_lengths(), self.max_length - 3)
        first, second = _cut(first, keep_first), _cut(second, keep_second)
        sep = self.special(self.sep, first)
        return self.arrays([self.special(self.cls, first), first, sep, second, sep], [0, 0, 0, 1, 1])

    def with_outputs(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        outputs = self.bert.forward(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
        return {**outputs, **{name: tf.identity(inputs[name], name=name) for name in ID_OUTPUTS}}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        return self.with_outputs(self.encode(text))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                  tf.TensorSpec([None], tf.string, name="text_pair")])
    def serve_pair(self, text, text_pair):
        return self.with_outputs(self.encode_pair(text, text_pair))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def tokenize(self, text):
        return self.encode(text)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                  tf.TensorSpec([None], tf.string, name="text_pair")])
    def tokenize_pair(self, text, text_pair):
        return self.encode_pair(text, text_pair)


def read_sentencepiece_model(export_dir: Path) -> bytes:
    path = export_dir / TOKENIZER_MODEL
    if not path.is_file():
        raise SentencePieceFileError(
            f"{path}: missing; the tf-text target embeds the SentencePiece model, so export with a tokenizer "
            "that has one (--tokenizer a .model file, or a folder holding tokenizer.model)")
    return path.read_bytes()


def export(weights: CanonicalWeights, export_dir: Path) -> ExportedArtifact:
    """Write `export_dir/tf-text`, the text-in SavedModel, from the export's weights and tokenizer."""
    from kobert.encoding import TextEncoder

    export_dir = Path(export_dir)
    model_bytes = read_sentencepiece_model(export_dir)
    where = str(export_dir / TOKENIZER_MODEL)
    id_map = kobert_id_map(model_bytes, where)
    tokenizer_dir = export_dir / TOKENIZER_MODEL.parent
    check_against_tokenizer_json(id_map, model_bytes, tokenizer_dir, where)
    # The one length rule, read where the Python encoder reads it.
    max_length = TextEncoder(tokenizer_dir, weights.config.max_position_embeddings).max_length

    model = KoBertTextTF(weights, model_bytes, id_map, max_length)
    signatures = {TEXT_SIGNATURE: model.serve_text.get_concrete_function(),
                  PAIR_SIGNATURE: model.serve_pair.get_concrete_function(),
                  IDS_SIGNATURE: model.bert.serve.get_concrete_function()}
    tf.saved_model.save(model, str(export_dir / NAME), signatures=signatures)
    return ExportedArtifact(
        name=NAME,
        files=[NAME],
        inputs=[{"name": n, "dtype": "int64"} for n in INPUT_NAMES],
        outputs=list(weights.config.output_names),
        framework=f"tensorflow {tf.__version__}, tensorflow-text {tensorflow_text.__version__}",
        # "signature" is what the runtime's `run` (ids) calls; the text signatures are for users.
        extra={"signature": IDS_SIGNATURE, "text_signature": TEXT_SIGNATURE, "pair_signature": PAIR_SIGNATURE,
               "text_inputs": [{"name": "text", "dtype": "string"}, {"name": "text_pair", "dtype": "string"}],
               "text_outputs": [*weights.config.output_names, *ID_OUTPUTS], "max_length": max_length},
    )
