"""KoBERT in native TensorFlow 2, built from a `CanonicalWeights`, saved as a SavedModel.

The whole model reads top to bottom in this file: embeddings, post-LN encoder
layers, pooler (for the heads that have one), task head. It reproduces Hugging Face `BertModel` /
`BertFor...` in eval mode (no dropout). Every weight is a `tf.Variable`, so the
SavedModel is self-contained: it loads with plain TensorFlow,

    tf.saved_model.load(path).signatures["serving_default"](
        input_ids=..., attention_mask=..., token_type_ids=...)

without kobert installed. Inputs are int64 (B, T) with dynamic batch and
length (T <= max_position_embeddings); outputs are a dict named as
`config.output_names`.

The ops are chosen so that tf2onnx converts the graph to plain ONNX (see
`kobert.exporters.tf2onnx`): GELU is written out with `tf.math.erf`, LayerNorm
with reductions, matmuls as `tf.matmul`.
"""

from __future__ import annotations

import math
from pathlib import Path

from kobert.canonical import CanonicalWeights
from kobert.config import INPUT_NAMES, KoBertConfig
from kobert.exporters import ExportedArtifact
from kobert.runtimes.tf_logging import import_tensorflow

tf = import_tensorflow()

INPUT_DTYPE = tf.int64
SIGNATURE = "serving_default"


def gelu(x):
    # Exact erf GELU, as transformers' "gelu". Not tf.nn.gelu(approximate=False): on TF 2.21
    # it lowers to Erfc, which tf2onnx passes through although ONNX has no such op.
    return 0.5 * x * (1.0 + tf.math.erf(x / math.sqrt(2.0)))


def layer_norm(x, gamma, beta, eps: float):
    # Biased variance over the last axis, as torch.nn.LayerNorm. Plain means and arithmetic,
    # not a fused TF op, so tf2onnx maps it to standard ONNX (GlobalAveragePool, Sqrt, Div).
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    centered = x - mean
    variance = tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True)
    return centered / tf.sqrt(variance + eps) * gamma + beta


def dense(x, kernel, bias):
    # Canonical kernels are (in, out): y = x @ kernel + bias for any number of leading axes.
    return tf.matmul(x, kernel) + bias


class KoBertTF(tf.Module):
    """The encoder plus its task head; `serve` is the SavedModel's serving signature."""

    def __init__(self, weights: CanonicalWeights):
        super().__init__(name="kobert")
        self.config: KoBertConfig = weights.config
        # Variables keyed by canonical name, so the SavedModel's checkpoint mirrors the naming table.
        self.variables_by_name = {
            name: tf.Variable(array, trainable=False, name=name.replace(".", "/"))
            for name, array in sorted(weights.tensors.items())
        }

    def w(self, name: str) -> tf.Variable:
        return self.variables_by_name[name]

    # --- embeddings ------------------------------------------------------------

    def embeddings(self, input_ids, token_type_ids):
        length = tf.shape(input_ids)[1]
        positions = tf.range(length)
        x = (tf.gather(self.w("embeddings.word"), input_ids)
             + tf.gather(self.w("embeddings.position"), positions)[tf.newaxis]
             + tf.gather(self.w("embeddings.token_type"), token_type_ids))
        return layer_norm(x, self.w("embeddings.norm.gamma"), self.w("embeddings.norm.beta"),
                          self.config.layer_norm_eps)

    # --- one post-LN encoder layer ---------------------------------------------

    def split_heads(self, x, batch, length):
        c = self.config
        x = tf.reshape(x, [batch, length, c.num_attention_heads, c.head_size])
        return tf.transpose(x, [0, 2, 1, 3])  # (B, heads, T, head_size)

    def attention(self, i: int, x, mask_bias):
        c = self.config
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        q = self.split_heads(dense(x, self.w(f"layer.{i}.attention.query.kernel"), self.w(f"layer.{i}.attention.query.bias")), batch, length)
        k = self.split_heads(dense(x, self.w(f"layer.{i}.attention.key.kernel"), self.w(f"layer.{i}.attention.key.bias")), batch, length)
        v = self.split_heads(dense(x, self.w(f"layer.{i}.attention.value.kernel"), self.w(f"layer.{i}.attention.value.bias")), batch, length)
        scores = tf.matmul(q, k, transpose_b=True) * (c.head_size ** -0.5) + mask_bias
        probs = tf.nn.softmax(scores, axis=-1)
        context = tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3])
        context = tf.reshape(context, [batch, length, c.hidden_size])
        out = dense(context, self.w(f"layer.{i}.attention.output.kernel"), self.w(f"layer.{i}.attention.output.bias"))
        return layer_norm(out + x, self.w(f"layer.{i}.attention.norm.gamma"),
                          self.w(f"layer.{i}.attention.norm.beta"), c.layer_norm_eps)

    def ffn(self, i: int, x):
        h = gelu(dense(x, self.w(f"layer.{i}.ffn.up.kernel"), self.w(f"layer.{i}.ffn.up.bias")))
        out = dense(h, self.w(f"layer.{i}.ffn.down.kernel"), self.w(f"layer.{i}.ffn.down.bias"))
        return layer_norm(out + x, self.w(f"layer.{i}.ffn.norm.gamma"),
                          self.w(f"layer.{i}.ffn.norm.beta"), self.config.layer_norm_eps)

    # --- the whole model ---------------------------------------------------------

    def forward(self, input_ids, attention_mask, token_type_ids) -> dict[str, tf.Tensor]:
        c = self.config
        # Additive mask as transformers builds it: 0 where attended, float32 min where padded,
        # so a fully padded row softmaxes to uniform weights exactly as in Hugging Face.
        mask = tf.cast(attention_mask, tf.float32)[:, tf.newaxis, tf.newaxis, :]  # (B, 1, 1, T)
        mask_bias = (1.0 - mask) * tf.float32.min

        x = self.embeddings(input_ids, token_type_ids)
        for i in range(c.num_hidden_layers):
            x = self.ffn(i, self.attention(i, x, mask_bias))
        outputs = {"last_hidden_state": x}
        if c.has_pooler:  # transformers' token-classification and QA models have no pooler
            outputs["pooler_output"] = tf.tanh(dense(x[:, 0], self.w("pooler.kernel"), self.w("pooler.bias")))

        spec = c.head_spec  # the model contract: what the head reads, what it outputs
        if spec.reads is not None:
            scores = dense(outputs[spec.reads], self.w("head.kernel"), self.w("head.bias"))
            if len(spec.outputs) == 1:
                outputs[spec.outputs[0]] = scores
            else:  # (B, T, n) -> n outputs of (B, T): QA's start and end logits
                outputs.update({name: scores[..., k] for k, name in enumerate(spec.outputs)})
        return {name: tf.identity(outputs[name], name=name) for name in c.output_names}

    @tf.function(input_signature=[tf.TensorSpec([None, None], INPUT_DTYPE, name=name) for name in INPUT_NAMES])
    def serve(self, input_ids, attention_mask, token_type_ids):
        return self.forward(input_ids, attention_mask, token_type_ids)


def export(weights: CanonicalWeights, export_dir: Path) -> ExportedArtifact:
    """Write `export_dir/tf`, a SavedModel whose `serving_default` runs the model."""
    export_dir = Path(export_dir)
    model = KoBertTF(weights)
    path = export_dir / "tf"
    tf.saved_model.save(model, str(path), signatures={SIGNATURE: model.serve.get_concrete_function()})
    input_dtype = INPUT_DTYPE.name
    return ExportedArtifact(
        name="tf",
        files=["tf"],
        inputs=[{"name": n, "dtype": input_dtype} for n in INPUT_NAMES],
        outputs=list(weights.config.output_names),
        framework=f"tensorflow {tf.__version__}",
        extra={"signature": SIGNATURE},
    )
