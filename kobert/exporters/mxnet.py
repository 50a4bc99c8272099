"""KoBERT as a Gluon HybridBlock, exported to an MXNet symbol + params pair.

MXNet 1.9.1 cannot import with numpy 2, so this module has two halves:

1. `export(weights, export_dir)` runs in the main venv and imports no mxnet. It
   saves the canonical weights to a temporary directory and runs
   `<mxnet python> -m kobert.exporters.mxnet <canonical_dir> <out_dir>`.
2. The Gluon model and `main()` run inside the MXNet interpreter (see
   `kobert.mxnet_env`): build the HybridBlock from the canonical weights,
   hybridize, `export()` to `kobert-symbol.json` + `kobert-0000.params`, reload
   with `SymbolBlock.imports` and check the reload reproduces the block.

The artifact needs no kobert to run::

    net = mx.gluon.SymbolBlock.imports("kobert-symbol.json",
        ["input_ids", "attention_mask", "token_type_ids"], "kobert-0000.params")
    outputs = net(ids, mask, types)  # float32 (batch, length) each

Semantics follow transformers' BertModel / BertFor... in eval mode: post-LN
layers, exact erf GELU, an additive attention mask of (1 - mask) * float32.min
(SKT's MXNet example ignored the mask; padded positions here never influence
valid ones), pooler = tanh(dense(h[:, 0])) for the heads that have one
(`config.has_pooler`; transformers' token-classification and QA models have none).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from kobert.canonical import CanonicalWeights
from kobert.exporters import ExportedArtifact
from kobert.mxnet_env import mxnet_python, mxnet_subprocess_env

ARTIFACT_NAME = "mxnet"
PREFIX = "kobert"  # -> kobert-symbol.json, kobert-0000.params
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# MXNet symbols take float32 data by default; Embedding reads float ids, exact below 2**24.
INPUT_DTYPE = "float32"
FLOAT32_MIN = -3.4028234663852886e38  # numpy.finfo(float32).min, as transformers' mask uses


class MXNetExportError(RuntimeError):
    """The MXNet export subprocess failed; the message carries its stderr."""


# ============================================================================
# Half 1: the main venv (no mxnet).
# ============================================================================


def export(weights: CanonicalWeights, export_dir: Path) -> ExportedArtifact:
    """Write `export_dir/mxnet/kobert-symbol.json` and `kobert-0000.params` via the MXNet interpreter."""
    export_dir = Path(export_dir)
    out_dir = export_dir / ARTIFACT_NAME
    out_dir.mkdir(parents=True, exist_ok=True)
    python = mxnet_python()
    with tempfile.TemporaryDirectory(prefix="kobert-mxnet-export-") as canonical_dir:
        weights.save(canonical_dir)
        command = [python, "-m", "kobert.exporters.mxnet", canonical_dir, str(out_dir)]
        proc = subprocess.run(command, env=mxnet_subprocess_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise MXNetExportError(
            f"MXNet export failed ({python} -m kobert.exporters.mxnet, exit code {proc.returncode}):\n"
            f"{proc.stderr.strip()[-4000:]}"
        )
    # The worker's last stdout line is its JSON report (mxnet may print before it).
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        report = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise MXNetExportError(f"MXNet export printed no JSON report; stdout was:\n{proc.stdout[-2000:]}") from None
    return ExportedArtifact(
        name=ARTIFACT_NAME,
        files=[f"{ARTIFACT_NAME}/{name}" for name in report["files"]],
        inputs=[{"name": name, "dtype": INPUT_DTYPE} for name in INPUT_NAMES],
        outputs=list(weights.config.output_names),
        framework=f"mxnet {report['mxnet_version']}",
    )


# ============================================================================
# Half 2: the Gluon model. Defined only in the MXNet interpreter (run as
# __main__, or imported where mxnet is already loaded), so importing this
# module in the main venv imports no mxnet.
# ============================================================================

if __name__ == "__main__" or "mxnet" in sys.modules:
    import warnings

    import mxnet as mx
    import numpy as np
    from mxnet.gluon import HybridBlock, SymbolBlock, nn

    def dense(units: int, in_units: int, prefix: str) -> nn.Dense:
        # flatten=False: apply to the last axis of (batch, length, in) inputs.
        return nn.Dense(units, in_units=in_units, flatten=False, prefix=prefix)

    class Embeddings(HybridBlock):
        """word + position (0..T-1, built inside the graph) + token type, then LayerNorm."""

        def __init__(self, config, **kwargs):
            super().__init__(**kwargs)
            with self.name_scope():
                self.word = nn.Embedding(config.vocab_size, config.hidden_size, prefix="word_")
                self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size, prefix="position_")
                self.token_type = nn.Embedding(config.type_vocab_size, config.hidden_size, prefix="token_type_")
                self.norm = nn.LayerNorm(epsilon=config.layer_norm_eps, in_channels=config.hidden_size, prefix="norm_")

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
                self.norm = nn.LayerNorm(epsilon=config.layer_norm_eps, in_channels=hidden, prefix="norm_")

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
                self.norm = nn.LayerNorm(epsilon=config.layer_norm_eps, in_channels=config.hidden_size, prefix="norm_")

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
                        self.layers.add(EncoderLayer(config, prefix=f"layer{i}_"))
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

    def gluon_params(config) -> dict[str, tuple[str, bool]]:
        """Gluon parameter suffix -> (canonical name, transpose?). Dense weights are (out, in)."""
        table = {
            "embeddings_word_weight": ("embeddings.word", False),
            "embeddings_position_weight": ("embeddings.position", False),
            "embeddings_token_type_weight": ("embeddings.token_type", False),
            "embeddings_norm_gamma": ("embeddings.norm.gamma", False),
            "embeddings_norm_beta": ("embeddings.norm.beta", False),
        }
        if config.has_pooler:
            table["pooler_weight"] = ("pooler.kernel", True)
            table["pooler_bias"] = ("pooler.bias", False)
        for i in range(config.num_hidden_layers):
            for block, dense_names in (("attention", ("query", "key", "value", "output")), ("ffn", ("up", "down"))):
                for name in dense_names:
                    table[f"layer{i}_{block}_{name}_weight"] = (f"layer.{i}.{block}.{name}.kernel", True)
                    table[f"layer{i}_{block}_{name}_bias"] = (f"layer.{i}.{block}.{name}.bias", False)
                table[f"layer{i}_{block}_norm_gamma"] = (f"layer.{i}.{block}.norm.gamma", False)
                table[f"layer{i}_{block}_norm_beta"] = (f"layer.{i}.{block}.norm.beta", False)
        if config.head != "none":
            table["head_weight"] = ("head.kernel", True)
            table["head_bias"] = ("head.bias", False)
        return table

    def build_gluon_model(weights: CanonicalWeights) -> KoBert:
        """A KoBert HybridBlock holding exactly the canonical weights (every tensor used, every param set)."""
        net = KoBert(weights.config, prefix="kobert_")
        net.initialize(mx.init.Zero())
        params = {name[len("kobert_"):]: p for name, p in net.collect_params().items()}
        table = gluon_params(weights.config)
        if params.keys() != table.keys():
            raise RuntimeError(f"Gluon params and the naming table differ: {sorted(params.keys() ^ table.keys())}")
        used = set()
        for suffix, (canonical, transpose) in table.items():
            array = weights[canonical].T if transpose else weights[canonical]
            if params[suffix].shape != array.shape:
                raise ValueError(f"{canonical}: shape {array.shape}, Gluon parameter {suffix} expects {params[suffix].shape}")
            params[suffix].set_data(mx.nd.array(np.ascontiguousarray(array), dtype="float32"))
            used.add(canonical)
        unused = sorted(set(weights.tensors) - used)
        if unused:
            raise ValueError(f"canonical tensors the Gluon model does not use: {', '.join(unused)}")
        return net

    def sample_inputs(config) -> list:
        """Batch 2, length 5, the second row padded: exercises the mask in the self-check."""
        ids = np.array([[2, 10, 20, 30, 3], [2, 40, 3, 1, 1]], dtype=np.float32) % config.vocab_size
        mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=np.float32)
        types = np.array([[0, 0, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=np.float32) % config.type_vocab_size
        return [mx.nd.array(a, dtype="float32") for a in (ids, mask, types)]

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
            print("usage: python -m kobert.exporters.mxnet <canonical_dir> <out_dir>", file=sys.stderr)
            return 2
        weights = CanonicalWeights.load(argv[0])
        files = export_symbol_block(weights, Path(argv[1]))
        print(json.dumps({"files": files, "mxnet_version": mx.__version__}))
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
