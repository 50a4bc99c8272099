"""KoBERT as a Gluon HybridBlock, exported to an MXNet symbol + params pair.

The MXNet half of the MXNet exporter: it runs only in the MXNet interpreter
(numpy < 2, see `kobert.mxnet_env`), started by `kobert.exporters.mxnet` as::

    python -m kobert.exporters.mxnet_gluon <canonical_dir> <out_dir>

It builds the HybridBlock from the canonical weights, traces it, exports
`kobert-symbol.json` + `kobert-0000.params`, reloads them with
`SymbolBlock.imports`, checks the reload reproduces the block, and prints a
one-line JSON report (files, inputs, mxnet version). It imports only the
standard library, numpy, mxnet and kobert's pure-python config/canonical modules.

The artifact needs no kobert to run::

    net = mx.gluon.SymbolBlock.imports("kobert-symbol.json",
        ["input_ids", "attention_mask", "token_type_ids"], "kobert-0000.params")
    outputs = net(ids, mask, types)  # float32 (batch, length) each

Semantics follow transformers' BertModel / BertFor... in eval mode: post-LN
layers, exact erf GELU, an additive attention mask of (1 - mask) * float32.min
(SKT's MXNet example ignored the mask; padded positions here never influence
valid ones), pooler = tanh(dense(h[:, 0])) for the heads that have one
(`config.has_pooler`; transformers' token-classification and QA models have none).

Parameter names are the canonical names (see `gluon_name`), so the canonical
naming table in `kobert.canonical` is the only one.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock, SymbolBlock, nn

from kobert.canonical import CanonicalWeights, weight_table

PREFIX = "kobert"  # -> kobert-symbol.json, kobert-0000.params
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# MXNet symbols take float32 data by default; Embedding reads float ids, exact below 2**24.
INPUT_DTYPE = "float32"
FLOAT32_MIN = -3.4028234663852886e38  # numpy.finfo(float32).min, as transformers' mask uses
ROOT = "kobert_"  # the Gluon prefix of the whole model


# --- the model -------------------------------------------------------------------
# Each block's prefix spells its canonical path ("layer.0.attention.query" ->
# "layer_0_" "attention_" "query_"), which is what makes `gluon_name` hold.


def dense(units: int, in_units: int, prefix: str, **kwargs) -> nn.Dense:
    # flatten=False: apply to the last axis of (batch, length, in) inputs.
    return nn.Dense(units, in_units=in_units, flatten=False, prefix=prefix, **kwargs)


def layer_norm(config, prefix: str = "norm_") -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=config.layer_norm_eps, in_channels=config.hidden_size, prefix=prefix)


class Embeddings(HybridBlock):
    """word + position (0..T-1, built inside the graph) + token type, then LayerNorm."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.word = nn.Embedding(config.vocab_size, config.hidden_size, prefix="word_")
            self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size, prefix="position_")
            self.token_type = nn.Embedding(config.type_vocab_size, config.hidden_size, prefix="token_type_")
            self.norm = layer_norm(config)

    def hybrid_forward(self, F, input_ids, token_type_ids):
        positions = F.contrib.arange_like(input_ids, axis=1)  # (T,): dynamic length
        x = self.word(input_ids) + self.token_type(token_type_ids)  # (B, T, H)
        x = F.broadcast_add(x, F.expand_dims(self.position(positions), axis=0))
        return self.norm(x)


class SelfAttention(HybridBlock):
    """Multi-head self-attention with the additive mask, then residual + LayerNorm (post-LN)."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.heads = config.num_attention_heads
        self.scale = config.head_size ** -0.5
        hidden = config.hidden_size
        with self.name_scope():
            self.query = dense(hidden, hidden, "query_")
            self.key = dense(hidden, hidden, "key_")
            self.value = dense(hidden, hidden, "value_")
            self.output = dense(hidden, hidden, "output_")
            self.norm = layer_norm(config)

    def split_heads(self, F, x):
        x = F.reshape(x, shape=(0, 0, -4, self.heads, -1))  # (B, T, heads, d)
        x = F.transpose(x, axes=(0, 2, 1, 3))  # (B, heads, T, d)
        return F.reshape(x, shape=(-3, 0, 0))  # (B*heads, T, d)

    def merge_heads(self, F, x):
        x = F.reshape(x, shape=(-4, -1, self.heads, 0, 0))  # (B, heads, T, d)
        x = F.transpose(x, axes=(0, 2, 1, 3))  # (B, T, heads, d)
        return F.reshape(x, shape=(0, 0, -3))  # (B, T, H)

    def hybrid_forward(self, F, x, mask_bias):
        # mask_bias: (B, 1, 1, T), 0 at valid keys and float32.min at padded keys.
        q = self.split_heads(F, self.query(x))
        k = self.split_heads(F, self.key(x))
        v = self.split_heads(F, self.value(x))
        scores = F.batch_dot(q, k, transpose_b=True) * self.scale  # (B*heads, T, T)
        scores = F.reshape(scores, shape=(-4, -1, self.heads, 0, 0))  # (B, heads, T, T)
        probs = F.softmax(F.broadcast_add(scores, mask_bias), axis=-1)
        context = F.batch_dot(F.reshape(probs, shape=(-3, 0, 0)), v)  # (B*heads, T, d)
        return self.norm(x + self.output(self.merge_heads(F, context)))


class FeedForward(HybridBlock):
    """Dense up, exact erf GELU, dense down, then residual + LayerNorm."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.up = dense(config.intermediate_size, config.hidden_size, "up_")
            self.down = dense(config.hidden_size, config.intermediate_size, "down_")
            self.norm = layer_norm(config)

    def hybrid_forward(self, F, x):
        # transformers' "gelu" is the exact erf form; MXNet's LeakyReLU "gelu" is that
        # same form (not the tanh approximation) in one kernel instead of six elementwise ops.
        h = F.LeakyReLU(self.up(x), act_type="gelu")
        return self.norm(x + self.down(h))


class EncoderLayer(HybridBlock):
    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.attention = SelfAttention(config, prefix="attention_")
            self.ffn = FeedForward(config, prefix="ffn_")

    def hybrid_forward(self, F, x, mask_bias):
        return self.ffn(self.attention(x, mask_bias))


class KoBert(HybridBlock):
    """The encoder, the pooler (if the head has one) and the task head; outputs in `config.output_names` order."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        hidden = config.hidden_size
        with self.name_scope():
            self.embeddings = Embeddings(config, prefix="embeddings_")
            self.layers = nn.HybridSequential(prefix="")
            with self.layers.name_scope():
                for i in range(config.num_hidden_layers):
                    self.layers.add(EncoderLayer(config, prefix=f"layer_{i}_"))
            # transformers builds token-classification and QA models without a pooler.
            if config.has_pooler:
                self.pooler = nn.Dense(hidden, in_units=hidden, activation="tanh", prefix="pooler_")
            if config.head == "sequence_classification":
                self.head = nn.Dense(config.num_labels, in_units=hidden, prefix="head_")
            elif config.head in ("token_classification", "question_answering"):
                self.head = dense(config.num_labels, hidden, "head_")

    def hybrid_forward(self, F, input_ids, attention_mask, token_type_ids):
        # transformers: (1 - mask) * finfo(float32).min, broadcast over heads and queries.
        mask_bias = F.reshape((1.0 - attention_mask) * FLOAT32_MIN, shape=(0, 1, 1, -1))  # (B, 1, 1, T)
        x = self.embeddings(input_ids, token_type_ids)
        for layer in self.layers:
            x = layer(x, mask_bias)
        head = self.config.head
        if head == "token_classification":
            return x, self.head(x)  # (B, T, labels)
        if head == "question_answering":
            start, end = F.split(self.head(x), num_outputs=2, axis=-1, squeeze_axis=True)  # (B, T) each
            return x, start, end
        first = F.squeeze(F.slice_axis(x, axis=1, begin=0, end=1), axis=1)  # h[:, 0]: (B, H)
        pooled = self.pooler(first)
        if head == "sequence_classification":
            return x, pooled, self.head(pooled)  # (B, labels)
        return x, pooled


# --- canonical weights in, Gluon parameters set ----------------------------------

# Canonical leaf -> the Gluon parameter it is. Gluon's Dense `weight` is the
# canonical `kernel` stored (out, in), i.e. transposed: exactly the rows
# `weight_table` marks transpose (Hugging Face's layout is Gluon's).
GLUON_LEAVES = {"kernel": "weight", "bias": "bias", "gamma": "gamma", "beta": "beta"}


def gluon_name(canonical: str) -> str:
    """The Gluon parameter name of a canonical tensor: `kobert_` + the name with `.` -> `_`, leaf in Gluon's words.

    "layer.0.attention.query.kernel" -> "kobert_layer_0_attention_query_weight";
    an embedding table names no leaf: "embeddings.word" -> "kobert_embeddings_word_weight".
    """
    path, _, leaf = canonical.rpartition(".")
    if leaf in GLUON_LEAVES:
        return ROOT + path.replace(".", "_") + "_" + GLUON_LEAVES[leaf]
    return ROOT + canonical.replace(".", "_") + "_weight"


def gluon_weight_table(config) -> dict[str, tuple[str, bool]]:
    """Gluon parameter name -> (canonical name, transpose?), for every row of `weight_table(config)`."""
    return {gluon_name(canonical): (canonical, transpose) for canonical, _, _, transpose in weight_table(config)}


def build_gluon_model(weights: CanonicalWeights) -> KoBert:
    """A KoBert HybridBlock holding exactly the canonical weights (every tensor used, every parameter set)."""
    net = KoBert(weights.config, prefix=ROOT)
    net.initialize(mx.init.Zero())
    params = net.collect_params()
    table = gluon_weight_table(weights.config)
    missing, unexpected = sorted(table.keys() - params.keys()), sorted(params.keys() - table.keys())
    if missing or unexpected:
        raise RuntimeError(f"the Gluon model's parameters and the canonical table differ: "
                           f"missing {missing}, unexpected {unexpected}")
    needed = {canonical for canonical, _ in table.values()}
    absent, unused = sorted(needed - weights.tensors.keys()), sorted(weights.tensors.keys() - needed)
    if absent or unused:
        raise ValueError(f"canonical tensors absent: {absent}; canonical tensors the Gluon model does not use: {unused}")
    for name, (canonical, transpose) in table.items():
        array = weights[canonical].T if transpose else weights[canonical]
        if params[name].shape != array.shape:
            raise ValueError(f"{canonical}: shape {array.shape}, Gluon parameter {name} expects {params[name].shape}")
        params[name].set_data(mx.nd.array(np.ascontiguousarray(array), dtype="float32"))
    return net


# --- export ------------------------------------------------------------------------


def sample_inputs(config) -> list:
    """Batch 2, length 5, the second row padded: exercises the mask in the self-check."""
    ids = np.array([[2, 10, 20, 30, 3], [2, 40, 3, 1, 1]], dtype=np.float32) % config.vocab_size
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=np.float32)
    types = np.array([[0, 0, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=np.float32) % config.type_vocab_size
    return [mx.nd.array(a, dtype=INPUT_DTYPE) for a in (ids, mask, types)]


def export_symbol_block(weights: CanonicalWeights, out_dir: Path) -> list[str]:
    """Hybridize and export; returns the file names (symbol, params) written under out_dir."""
    net = build_gluon_model(weights)
    # HybridBlock.export names its inputs data0, data1, ...; tracing through named
    # variables and exporting the SymbolBlock keeps input_ids, attention_mask, token_type_ids.
    inputs = [mx.sym.var(name) for name in INPUT_NAMES]
    graph = SymbolBlock(mx.sym.Group(list(net(*inputs))), inputs, params=net.collect_params())
    graph.hybridize()
    sample = sample_inputs(weights.config)
    expected = [o.asnumpy() for o in graph(*sample)]
    out_dir.mkdir(parents=True, exist_ok=True)
    graph.export(str(out_dir / PREFIX), epoch=0)
    files = [f"{PREFIX}-symbol.json", f"{PREFIX}-0000.params"]
    # Self-check: the files alone, through the plain loader a user will call, reproduce the block.
    with warnings.catch_warnings():
        # imports() cannot infer input dtypes before the first call; they come with the data.
        warnings.filterwarnings("ignore", message="Cannot decide type")
        reloaded = SymbolBlock.imports(str(out_dir / files[0]), list(INPUT_NAMES), str(out_dir / files[1]))
    got = [o.asnumpy() for o in reloaded(*sample)]
    if len(got) != len(weights.config.output_names):
        raise RuntimeError(f"exported symbol has {len(got)} outputs, expected {weights.config.output_names}")
    for name, e, g in zip(weights.config.output_names, expected, got):
        if e.shape != g.shape or not np.allclose(e, g, rtol=0, atol=1e-6):
            raise RuntimeError(f"{out_dir / files[0]}: reloaded output {name} differs from the Gluon block")
    return files


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m kobert.exporters.mxnet_gluon <canonical_dir> <out_dir>", file=sys.stderr)
        return 2
    weights = CanonicalWeights.load(argv[0])
    files = export_symbol_block(weights, Path(argv[1]))
    inputs = [{"name": name, "dtype": INPUT_DTYPE} for name in INPUT_NAMES]
    print(json.dumps({"files": files, "inputs": inputs, "mxnet_version": mx.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
