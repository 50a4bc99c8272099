"""Masked-language-model pretraining of a KoBERT encoder on uint16 shards: one readable loop.

    python -m kobert.training.cli pretrain --shards data/shards --preset small --out runs/small
    torchrun --nproc-per-node 2 -m kobert.training.cli pretrain ...   # same run, data-parallel

What makes the run reproducible and world-size independent: the batch of step `s` and its
masks are drawn from `np.random.default_rng([seed, s])` for the whole global batch, and each
rank takes its rows; the loss is the sum of masked-token cross-entropies divided by the number
of masked tokens in the *global* batch. So 1 process and N processes see the same data and
compute the same loss and gradient (up to float summation order), and a resumed run draws
exactly the batches it would have drawn, without any saved RNG state. Dropout is reseeded from
(seed, step, rank) every step for the same reason.

Checkpoints (`out/checkpoints/step_NNNNNNN/`) hold model.safetensors, optimizer.safetensors
and trainer_state.json; each is written to a temporary directory, renamed into place, then
`out/checkpoints/latest` is replaced atomically, so a kill at any moment leaves a loadable one.
Nothing is unpickled on resume.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kobert.config import KoBertConfig, preset
from kobert.training.corpus import TokenShards, load_shards

IGNORE_INDEX = -100
# Weights tied to others in BertForMaskedLM; saved once, re-tied on load.
TIED_KEYS = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")
LOG_FIELDS = ("step", "loss", "lr", "tokens", "tokens_per_s", "elapsed_s")


@dataclass
class PretrainConfig:
    shards: str
    out: str
    preset: str = "small"
    model: dict = field(default_factory=dict)  # KoBertConfig fields overriding the preset
    steps: int = 10_000
    batch_size: int = 128  # sequences per optimizer step, over all ranks and micro-batches
    grad_accum: int = 1
    seq_len: int = 128
    lr: float = 5e-4
    warmup_steps: int | None = None  # default: 6% of steps
    min_lr: float = 0.0
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float = 1.0
    mask_prob: float = 0.15
    dropout: float = 0.1
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    device: str = "auto"  # auto | cpu | cuda
    compile: bool = False
    resume: bool = False
    progress: bool = True
    # What each token buys and costs (issue 18): the objective, bf16 autocast, a token-keyed schedule.
    objective: str = "mlm"  # mlm | electra (replaced-token detection; the backbone stays a plain BertModel)
    generator_fraction: float = 0.5  # ELECTRA generator width / discriminator width
    rtd_weight: float = 50.0  # ELECTRA's discriminator loss weight
    precision: str = "auto"  # auto (bf16 autocast where the CPU/GPU has bf16) | bf16 | fp32
    schedule: str = "linear"  # linear (by steps, warm-up then decay) | wsd (by tokens: warm-up, stable, decay)
    warmup_tokens: int = 2_000_000  # wsd: tokens of linear warm-up (counted from the run's first token)
    decay_tokens: int = 0  # wsd: tokens of linear decay to min_lr at the end of max_tokens; 0 = stay stable
    max_tokens: int | None = None  # stop after this many tokens seen (overrides steps)
    time_limit_min: float | None = None  # stop cleanly (checkpoint, export) after this many minutes
    checkpoint_minutes: float = 10.0  # also checkpoint on wall time, so a killed session loses little
    init_from: str | None = None  # a backbone dir (weights + state.json): continue it with a fresh optimizer
    branch_from: str | None = None  # a run dir: start from its latest checkpoint (optimizer too), e.g. a decay

    def __post_init__(self):
        if self.objective not in ("mlm", "electra"):
            raise ValueError(f"objective={self.objective!r}: expected mlm or electra")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision={self.precision!r}: expected auto, bf16 or fp32")
        if self.schedule not in ("linear", "wsd"):
            raise ValueError(f"schedule={self.schedule!r}: expected linear or wsd")
        if self.max_tokens is not None:
            self.steps = -(-self.max_tokens // (self.batch_size * self.seq_len))
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"mask_prob={self.mask_prob}: expected a fraction in (0, 1), typically 0.15-0.3")
        if self.seq_len < 8:
            raise ValueError(f"seq_len={self.seq_len}: too short for [CLS] text [SEP]")
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("steps, batch_size and grad_accum must be positive")
        self.betas = tuple(self.betas)

    @property
    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else max(1, round(0.06 * self.steps))

    def model_config(self, vocab_size: int) -> KoBertConfig:
        base = dataclasses.replace(preset(self.preset), **self.model)
        return dataclasses.replace(base, vocab_size=vocab_size,
                                   max_position_embeddings=max(base.max_position_embeddings, self.seq_len))


# --- data: packed sequences and dynamic masks ---------------------------------------


class PackedSequences:
    """Sequences of `seq_len`: [CLS] + tokens from a random sentence start + [SEP], padded at a shard's end."""

    def __init__(self, shards: TokenShards, seq_len: int):
        self.shards, self.seq_len = shards, seq_len
        self.cls, self.sep, self.pad = (shards.special_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
        self.sentence_offsets = np.cumsum([0] + [len(s) for s in shards.starts])
        if self.sentence_offsets[-1] == 0:
            raise ValueError(f"{shards.directory}: shards hold no sentences")

    def batch(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        picks = rng.integers(self.sentence_offsets[-1], size=batch_size)
        rows = np.full((batch_size, self.seq_len), self.pad, dtype=np.int64)
        body = self.seq_len - 2
        for i, k in enumerate(picks):
            shard = int(np.searchsorted(self.sentence_offsets, k, side="right")) - 1
            start = int(self.shards.starts[shard][k - self.sentence_offsets[shard]])
            chunk = self.shards.streams[shard][start:start + body]
            rows[i, 0] = self.cls
            rows[i, 1:1 + len(chunk)] = chunk
            if chunk[-1] != self.sep:  # a chunk ending at a document end already has its [SEP]
                rows[i, 1 + len(chunk)] = self.sep
        return rows


def mask_tokens(ids: np.ndarray, rng: np.random.Generator, mask_prob: float, mask_id: int,
                never_mask: tuple[int, ...], random_ids: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """BERT's dynamic masking: pick `mask_prob` of the maskable tokens; of those 80% -> [MASK],
    10% -> a random normal token (ids in `random_ids` = [lo, hi)), 10% unchanged.

    Returns (inputs, labels) with labels = IGNORE_INDEX where nothing is predicted.
    """
    chosen = ~np.isin(ids, never_mask) & (rng.random(ids.shape) < mask_prob)
    labels = np.where(chosen, ids, IGNORE_INDEX)
    action = rng.random(ids.shape)
    inputs = ids.copy()
    inputs[chosen & (action < 0.8)] = mask_id
    replace = chosen & (action >= 0.8) & (action < 0.9)
    inputs[replace] = rng.integers(random_ids[0], random_ids[1], size=int(replace.sum()))
    return inputs, labels


def global_batch(data: PackedSequences, cfg: PretrainConfig, step: int, mask_id: int,
                 vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The whole step's batch, identical on every rank and for every world size."""
    rng = np.random.default_rng([cfg.seed, step])
    ids = data.batch(rng, cfg.batch_size)
    first_normal = max(data.cls, data.sep, data.pad, mask_id) + 1
    return mask_tokens(ids, rng, cfg.mask_prob, mask_id, (data.cls, data.sep, data.pad),
                       (first_normal, vocab_size))


def learning_rate(cfg: PretrainConfig, step: int, tokens: int = 0, warmup_from: int = 0) -> float:
    """The LR before the step that starts at `tokens` seen.

    linear: warm-up over steps to `lr`, then linear decay to `min_lr` at the last step.
    wsd (warmup-stable-decay, keyed to tokens so machines of any speed follow one schedule):
    warm-up over `warmup_tokens` counted from `warmup_from` (where this optimizer started: 0, or
    a continued backbone's tokens, so a fresh optimizer re-warms), then constant, then a linear decay
    to `min_lr` over the last `decay_tokens` of `max_tokens` (a release branched off the run).
    """
    if cfg.schedule == "wsd":
        lr = cfg.lr * min(1.0, (tokens - warmup_from + cfg.batch_size * cfg.seq_len) / max(1, cfg.warmup_tokens))
        end = cfg.max_tokens or cfg.steps * cfg.batch_size * cfg.seq_len
        if cfg.decay_tokens > 0 and tokens >= end - cfg.decay_tokens:
            left = max(0.0, (end - tokens) / cfg.decay_tokens)
            lr = cfg.min_lr + (lr - cfg.min_lr) * left
        return lr
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * max(0.0, 1.0 - progress)


# --- model ----------------------------------------------------------------------------


def build_model(config: KoBertConfig, dropout: float):
    import transformers

    hf = transformers.BertConfig(**{**config.to_hf_dict(), "architectures": ["BertForMaskedLM"],
                                    "hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout})
    return transformers.BertForMaskedLM._from_config(hf, attn_implementation="sdpa")


def build_electra(config: KoBertConfig, dropout: float, generator_fraction: float):
    """ELECTRA's pair: a small generator (MLM) and the discriminator, a plain BertModel plus a
    replaced-token-detection head. The generator shares the discriminator's token, position and
    type embeddings (ELECTRA's tied embeddings); its width is `generator_fraction` of the
    discriminator's, with 64-wide heads. Only `bert.*` becomes the backbone.
    """
    import torch
    import transformers

    hf = config.to_hf_dict()
    bert = transformers.BertModel._from_config(
        transformers.BertConfig(**{**hf, "hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}),
        add_pooling_layer=False, attn_implementation="sdpa")
    width = max(64, int(round(config.hidden_size * generator_fraction / 64)) * 64)
    gen_cfg = transformers.ElectraConfig(
        vocab_size=config.vocab_size, embedding_size=config.hidden_size, hidden_size=width,
        num_hidden_layers=config.num_hidden_layers, num_attention_heads=width // 64,
        intermediate_size=4 * width, max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size, pad_token_id=config.pad_token_id,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, tie_word_embeddings=True)
    generator = transformers.ElectraForMaskedLM._from_config(gen_cfg, attn_implementation="sdpa")
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        setattr(generator.electra.embeddings, name, getattr(bert.embeddings, name))
    generator.generator_lm_head.weight = bert.embeddings.word_embeddings.weight
    h = config.hidden_size
    rtd_head = torch.nn.Sequential(torch.nn.Linear(h, h), torch.nn.GELU(), torch.nn.Linear(h, 1))
    rtd_head.apply(bert._init_weights)
    return torch.nn.ModuleDict({"bert": bert, "rtd_head": rtd_head, "generator": generator})


def build_pretraining_model(config: KoBertConfig, cfg: PretrainConfig):
    if cfg.objective == "electra":
        return build_electra(config, cfg.dropout, cfg.generator_fraction)
    return build_model(config, cfg.dropout)


def _masked_lm_objective(model):
    """A module whose forward is the MLM loss (mean over the global batch's masked tokens).

    The vocabulary projection runs on the ~15% masked tokens instead of all of them,
    which on the small preset is a third of the compute. It is one module so that
    DDP sees the whole forward.
    """
    import torch

    class MaskedLMObjective(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, labels, originals, n_masked, n_tokens):
            hidden = self.model.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            where = labels != IGNORE_INDEX
            logits = self.model.cls(hidden[where])
            return torch.nn.functional.cross_entropy(logits.float(), labels[where], reduction="sum") / n_masked

    return MaskedLMObjective()


def _electra_objective(model, rtd_weight: float):
    """ELECTRA's loss: the generator's MLM loss at masked positions + `rtd_weight` x the
    discriminator's replaced-token-detection loss on every real token (a loss on every token,
    where most of ELECTRA's gain per FLOP comes from). Masked positions get tokens sampled from
    the generator; a sample equal to the original counts as original, as in ELECTRA.
    """
    import torch
    import torch.nn.functional as F

    class ElectraObjective(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, labels, originals, n_masked, n_tokens):
            where = labels != IGNORE_INDEX
            generator = self.model["generator"]
            gen_hidden = generator.electra(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            gen_logits = generator.generator_lm_head(generator.generator_predictions(gen_hidden[where])).float()
            mlm = F.cross_entropy(gen_logits, labels[where], reduction="sum") / n_masked
            with torch.no_grad():
                gumbel = -torch.log(-torch.log(torch.rand_like(gen_logits).clamp_(1e-9, 1.0)))
                sampled = (gen_logits + gumbel).argmax(-1)
            corrupted = originals.clone()
            corrupted[where] = sampled
            replaced = (corrupted != originals).float()
            hidden = self.model["bert"](input_ids=corrupted, attention_mask=attention_mask).last_hidden_state
            real = attention_mask.bool()
            logits = self.model["rtd_head"](hidden[real]).squeeze(-1).float()
            rtd = F.binary_cross_entropy_with_logits(logits, replaced[real], reduction="sum") / n_tokens
            return mlm + rtd_weight * rtd

    return ElectraObjective()


def build_optimizer(model, cfg: PretrainConfig):
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


# --- checkpoints ----------------------------------------------------------------------


def _tied_keys(model) -> set[str]:
    """Names of tensors that share storage with an earlier name (tied weights): saved once."""
    seen, tied = set(), set(TIED_KEYS)
    for name, tensor in model.state_dict(keep_vars=True).items():
        ptr = tensor.data_ptr()
        if ptr in seen:
            tied.add(name)
        seen.add(ptr)
    return tied


def _model_state(model) -> dict:
    tied = _tied_keys(model)
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in tied}


def _load_model_state(model, path: Path) -> None:
    from safetensors.torch import load_file

    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    tied = _tied_keys(model)
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ValueError(f"{path}: missing {missing[:3]}, unexpected {unexpected[:3]} (model config differs?)")


def save_checkpoint(out: Path, step: int, model, optimizer, cfg: PretrainConfig, tokens: int,
                    elapsed: float, warmup_from: int = 0) -> Path:
    from safetensors.torch import save_file

    root = out / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:07d}"
    tmp = root / f".tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_model_state(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
    opt = optimizer.state_dict()
    tensors = {f"state.{i}.{k}": v.detach().cpu().contiguous() for i, s in opt["state"].items() for k, v in s.items()}
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    state = {"step": step, "tokens": tokens, "elapsed_s": elapsed, "warmup_from_tokens": warmup_from,
             "param_groups": opt["param_groups"],
             "config": dataclasses.asdict(cfg)}
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
    final = root / name
    shutil.rmtree(final, ignore_errors=True)  # left by a run killed between rename and `latest`
    os.replace(tmp, final)
    _point_latest(root, name)
    kept = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in kept[:-cfg.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _point_latest(root: Path, name: str) -> None:
    """Make `root/latest` name checkpoint `name`, atomically."""
    (root / "latest.tmp").write_text(name, encoding="utf-8")
    os.replace(root / "latest.tmp", root / "latest")


def latest_checkpoint(out: Path) -> Path | None:
    pointer = out / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = out / "checkpoints" / pointer.read_text(encoding="utf-8").strip()
    if not path.is_dir():
        raise FileNotFoundError(f"{pointer} names {path.name}, which does not exist")
    return path


def load_checkpoint_state(path: Path, model, optimizer, cfg: PretrainConfig, device) -> dict:
    from safetensors.torch import load_file

    state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    saved = state["config"]
    for key in ("seed", "batch_size", "seq_len", "mask_prob", "preset", "model", "objective"):
        before = saved.get(key, "mlm" if key == "objective" else None)  # runs before --objective were MLM
        if before != dataclasses.asdict(cfg)[key]:
            raise ValueError(f"{path}: checkpoint has {key}={before!r}, this run {dataclasses.asdict(cfg)[key]!r}; "
                             "resuming with different data or model settings would not continue the same run")
    _load_model_state(model, path / "model.safetensors")
    tensors = load_file(str(path / "optimizer.safetensors"), device=str(device))
    opt_state: dict = {}
    for key, value in tensors.items():
        _, i, name = key.split(".", 2)
        opt_state.setdefault(int(i), {})[name] = value.cpu() if name == "step" else value
    groups = state["param_groups"]
    for g in groups:
        g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    return state


# --- export and plots ----------------------------------------------------------------


def export_model(model, config: KoBertConfig, shards: TokenShards, out: Path, seed: int) -> Path:
    """A Hugging Face BertForMaskedLM directory + tokenizer, loadable by `kobert.checkpoint.load_checkpoint`.

    MLM-only pretraining never trains a pooler, but a head-less KoBERT checkpoint has one
    (and sequence classification reads it), so a seeded BERT-style initial pooler is added.
    """
    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = _model_state(model)
    electra = "rtd_head.0.weight" in state
    if electra:  # the discriminator is the backbone; the generator and RTD head stay in the run
        state = {k: v for k, v in state.items() if k.startswith("bert.")}
    g = torch.Generator().manual_seed(seed)
    state["bert.pooler.dense.weight"] = torch.randn(config.hidden_size, config.hidden_size, generator=g) * 0.02
    state["bert.pooler.dense.bias"] = torch.zeros(config.hidden_size)
    tmp = out / "model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out / "model.safetensors")
    hf = {**config.to_hf_dict(), "architectures": ["BertModel" if electra else "BertForMaskedLM"],
          "tie_word_embeddings": True}
    (out / "config.json").write_text(json.dumps(hf, indent=2), encoding="utf-8")
    tokenizer_dir = shards.directory / "tokenizer"
    if tokenizer_dir.is_dir():
        for f in tokenizer_dir.iterdir():
            shutil.copy2(f, out / f.name)
    return out


def plot_loss(log_file: Path, png: Path, ylabel: str = "MLM loss", title: str | None = None) -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(log_file)
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"pretraining loss ({log_file.parent.name})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


def read_log(log_file: Path) -> list[dict]:
    if not log_file.is_file():
        return []
    with open(log_file, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _truncate_log(log_file: Path, step: int) -> None:
    """On resume, drop rows logged after the checkpoint, which the resumed run will log again."""
    rows = []
    if log_file.is_file():
        with open(log_file, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    with open(log_file, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def use_bf16(precision: str, cuda: bool) -> bool:
    """bf16 autocast where the hardware computes in bf16 (AMX-BF16 or AVX512-BF16 CPUs, CUDA)."""
    from kobert.bench import cpu_info

    if precision != "auto":
        return precision == "bf16"
    flags = cpu_info()["flags"]
    return cuda or flags.get("amx_bf16", False) or flags.get("avx512_bf16", False)


def branch_checkpoint(run: Path, out: Path) -> Path:
    """Copy `run`'s latest checkpoint into `out` as its own latest: the start of a branch (a release's
    decay) that leaves the run itself untouched, so it can go on at its stable learning rate."""
    source = latest_checkpoint(run)
    if source is None:
        raise FileNotFoundError(f"{run}: no checkpoints/latest to branch from")
    root = out / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{source.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    os.replace(tmp, root / source.name)
    _point_latest(root, source.name)
    if (run / "log.csv").is_file() and not (out / "log.csv").exists():
        shutil.copy2(run / "log.csv", out / "log.csv")
    return source


def continue_backbone(backbone: Path, model, cfg: PretrainConfig) -> tuple[int, int, float]:
    """Load a committed backbone's weights (`model.safetensors`, plus `pretrain_weights.safetensors`
    for ELECTRA's generator) and its `state.json` (step = data position, tokens, wall time) so a new machine
    continues the run that landed; the optimizer starts fresh and re-warms (wsd `warmup_tokens`).
    """
    from safetensors.torch import load_file

    state_file = backbone / "state.json"
    if not state_file.is_file():
        raise FileNotFoundError(f"{backbone}: no state.json (a backbone committed by `kobert pretrain`)")
    state = json.loads(state_file.read_text(encoding="utf-8"))
    # Batch size and sequence length may change (a stretch at 512 tokens, more steps per token):
    # batches are drawn at random per (seed, step), so the step stays a valid data position.
    objective = state.get("recipe", {}).get("objective", "mlm")
    if objective != cfg.objective:
        raise ValueError(f"{backbone}: backbone was trained with objective={objective!r}, this run {cfg.objective!r}")
    tensors = load_file(str(backbone / "model.safetensors"))  # the encoder (+ MLM head for MLM runs)
    extras = backbone / "pretrain_weights.safetensors"  # ELECTRA: generator + RTD head
    if extras.is_file():
        tensors.update(load_file(str(extras)))
    missing, _ = model.load_state_dict(tensors, strict=False)  # the exported pooler is not trained here
    missing = [k for k in missing if k not in _tied_keys(model)]
    if missing:
        raise ValueError(f"{backbone}: missing {missing[:3]} (model shape differs from this run's?)")
    return int(state["step"]), int(state["tokens"]), float(state.get("elapsed_s", 0.0))


# --- the loop --------------------------------------------------------------------------


@dataclass
class Ranks:
    """Where this process sits: alone, or one rank of a torchrun job."""

    rank: int = 0
    world: int = 1
    distributed: bool = False
    device: object = "cpu"

    @property
    def master(self) -> bool:
        return self.rank == 0


@dataclass
class Position:
    """How far the run has come; `step` is also the data position (step s always draws batch s)."""

    step: int = 0
    tokens: int = 0
    elapsed_before: float = 0.0  # wall seconds spent by earlier processes of this run
    warmup_from: int = 0  # tokens where this optimizer's warm-up began (a continued backbone re-warms)


def start_ranks(cfg: PretrainConfig) -> Ranks:
    import torch
    import torch.distributed as dist

    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    ranks = Ranks(device=torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if use_cuda else "cpu"))
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        dist.init_process_group("nccl" if use_cuda else "gloo")
        ranks.rank, ranks.world, ranks.distributed = dist.get_rank(), dist.get_world_size(), True
    if use_cuda:
        torch.cuda.set_device(ranks.device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if cfg.batch_size % (ranks.world * cfg.grad_accum):
        raise ValueError(f"batch_size={cfg.batch_size} is not divisible by world size {ranks.world} "
                         f"x grad_accum {cfg.grad_accum}")
    return ranks


def restore_position(cfg: PretrainConfig, out: Path, model, optimizer, ranks: Ranks) -> Position:
    """Where to start: a branch copies another run's checkpoint in; --resume (or a branch) loads
    out's latest checkpoint with its optimizer; --init-from loads a committed backbone's weights."""
    say = print if ranks.master else (lambda *a, **k: None)
    if cfg.branch_from and latest_checkpoint(out) is None:
        say(f"branched from {branch_checkpoint(Path(cfg.branch_from), out)}")
    ckpt = latest_checkpoint(out) if (cfg.resume or cfg.branch_from) else None
    if ckpt is not None:
        state = load_checkpoint_state(ckpt, model, optimizer, cfg, ranks.device)
        say(f"resumed from {ckpt} at step {state['step']}")
        return Position(state["step"], state["tokens"], state["elapsed_s"], state.get("warmup_from_tokens", 0))
    if cfg.resume:
        say(f"no checkpoint under {out / 'checkpoints'}; starting from step 0")
    if cfg.init_from:
        step, tokens, elapsed = continue_backbone(Path(cfg.init_from), model, cfg)
        say(f"continuing {cfg.init_from} from step {step} ({tokens:,} tokens) with a fresh optimizer")
        return Position(step, tokens, elapsed, warmup_from=tokens)
    return Position()


def wrap_objective(cfg: PretrainConfig, model, ranks: Ranks):
    import torch

    objective = _electra_objective(model, cfg.rtd_weight) if cfg.objective == "electra" else _masked_lm_objective(model)
    if cfg.compile:
        objective = torch.compile(objective)
    if ranks.distributed:
        from torch.nn.parallel import DistributedDataParallel

        objective = DistributedDataParallel(objective, device_ids=[ranks.device.index] if ranks.device.type == "cuda" else None)
    return objective


def train_step(cfg: PretrainConfig, step: int, data: PackedSequences, objective, model, optimizer, ranks: Ranks,
               autocast, mask_id: int, vocab_size: int):
    """One optimizer step on global batch `step` (this rank's rows, in grad_accum micro-batches); the summed loss."""
    import torch

    inputs, labels = global_batch(data, cfg, step, mask_id, vocab_size)
    n_masked = max(1, int((labels != IGNORE_INDEX).sum()))  # over the global batch
    originals = np.where(labels != IGNORE_INDEX, labels, inputs)
    n_tokens = max(1, int((originals != data.pad).sum()))
    rows = cfg.batch_size // ranks.world
    mine = slice(ranks.rank * rows, (ranks.rank + 1) * rows)
    x, y, o = (torch.from_numpy(a[mine]).to(ranks.device) for a in (inputs, labels, originals))
    attention = (o != data.pad).long()
    torch.manual_seed(cfg.seed * 1_000_003 + step * 1009 + ranks.rank)  # dropout, reproducible on resume
    micro = rows // cfg.grad_accum
    total = torch.zeros((), device=ranks.device)
    for m in range(cfg.grad_accum):
        part = slice(m * micro, (m + 1) * micro)
        last = m == cfg.grad_accum - 1
        context = objective.no_sync() if ranks.distributed and not last else contextlib.nullcontext()
        with context, autocast:
            loss = objective(x[part], attention[part], y[part], o[part], n_masked, n_tokens)
        # DDP averages gradients over ranks; the loss is already a share of the global mean.
        (loss * ranks.world).backward()
        total += loss.detach()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total


class TrainLog:
    """log.csv rows every `log_every` steps (loss averaged over ranks and steps) and the progress bar."""

    def __init__(self, cfg: PretrainConfig, out: Path, ranks: Ranks, position: Position):
        import torch

        self.cfg, self.file, self.ranks = cfg, out / "log.csv", ranks
        self.loss_sum, self.steps = torch.zeros((), device=ranks.device), 0
        self.last_loss = float("nan")
        self.t_start = self.t_row = time.perf_counter()
        self.tokens_at_row, self.elapsed_before = position.tokens, position.elapsed_before
        self.bar = None
        if ranks.master:
            _truncate_log(self.file, position.step)
            if cfg.progress:
                try:
                    from tqdm import tqdm

                    self.bar = tqdm(total=cfg.steps, initial=position.step, unit="step", dynamic_ncols=True)
                except ImportError:
                    pass

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t_start

    def add(self, loss, done: int, tokens: int, lr: float, last: bool) -> None:
        import torch.distributed as dist

        self.loss_sum += loss
        self.steps += 1
        if self.bar is not None:
            self.bar.update(1)
        if done % self.cfg.log_every and not last:
            return
        if self.ranks.distributed:
            dist.all_reduce(self.loss_sum)
        self.last_loss = self.loss_sum.item() / self.steps
        now = time.perf_counter()
        rate = (tokens - self.tokens_at_row) / max(now - self.t_row, 1e-9)
        if self.ranks.master:
            with open(self.file, "a", newline="") as f:
                csv.writer(f).writerow([done, f"{self.last_loss:.6f}", f"{lr:.6e}", tokens, f"{rate:.1f}",
                                        f"{self.elapsed():.1f}"])
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{self.last_loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{rate:,.0f}", refresh=False)
            else:
                print(f"step {done}/{self.cfg.steps} loss {self.last_loss:.4f} lr {lr:.2e} tokens/s {rate:,.0f}", flush=True)
        self.loss_sum.zero_()
        self.steps, self.t_row, self.tokens_at_row = 0, now, tokens

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def finished(cfg: PretrainConfig, position: Position) -> bool:
    """--max-tokens seen (a continuation may change tokens per step), else --steps done."""
    if cfg.max_tokens is not None:
        return position.tokens >= cfg.max_tokens
    return position.step >= cfg.steps


def out_of_time(cfg: PretrainConfig, log: TrainLog, ranks: Ranks) -> bool:
    """--time-limit-min reached (agreed by every rank, so all stop at the same step)."""
    import torch
    import torch.distributed as dist

    if cfg.time_limit_min is None:
        return False
    over = time.perf_counter() - log.t_start >= 60 * cfg.time_limit_min
    if ranks.distributed:
        flag = torch.tensor([float(over)], device=ranks.device)
        dist.all_reduce(flag)
        over = bool(flag.item())
    return over


def finish(cfg: PretrainConfig, out: Path, model, config: KoBertConfig, shards: TokenShards, log: TrainLog,
           summary: dict) -> dict:
    """The master's last words: the exported model, the loss curve, summary.json."""
    summary["model_dir"] = str(export_model(model, config, shards, out / "model", cfg.seed))
    png = plot_loss(log.file, out / "loss.png")
    summary["loss_png"] = str(png) if png else None
    rows = read_log(log.file)
    if rows:
        summary["tokens_per_s"] = rows[-1]["tokens_per_s"]
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def pretrain(cfg: PretrainConfig) -> dict:
    """Run (or resume, branch, continue) pretraining; returns a summary. Works alone or under torchrun."""
    import torch
    import torch.distributed as dist

    ranks = start_ranks(cfg)
    out = Path(cfg.out)
    shards = load_shards(cfg.shards)
    data = PackedSequences(shards, cfg.seq_len)
    mask_id, vocab_size = shards.special_id("[MASK]"), int(shards.meta["vocab_size"])
    config = cfg.model_config(vocab_size)

    torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP also broadcasts them)
    model = build_pretraining_model(config, cfg).to(ranks.device)
    optimizer = build_optimizer(model, cfg)
    position = restore_position(cfg, out, model, optimizer, ranks)
    objective = wrap_objective(cfg, model, ranks)
    bf16 = use_bf16(cfg.precision, ranks.device.type == "cuda")
    autocast = torch.autocast(ranks.device.type, dtype=torch.bfloat16, enabled=bf16)
    if ranks.master:
        out.mkdir(parents=True, exist_ok=True)
        (out / "pretrain_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2), encoding="utf-8")
        print(f"model: {config.num_hidden_layers} layers x {config.hidden_size}, vocab {vocab_size}, "
              f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters; shards: {shards.num_tokens:,} "
              f"tokens; world {ranks.world}, {cfg.batch_size} x {cfg.seq_len} tokens per step, device {ranks.device}, "
              f"objective {cfg.objective}, {'bf16 autocast' if bf16 else 'fp32'}, schedule {cfg.schedule}")
    log = TrainLog(cfg, out, ranks, position)

    model.train()
    t_checkpoint = time.perf_counter()
    while not finished(cfg, position):
        lr = learning_rate(cfg, position.step, position.tokens, position.warmup_from)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = train_step(cfg, position.step, data, objective, model, optimizer, ranks, autocast, mask_id, vocab_size)
        position.step += 1
        position.tokens += cfg.batch_size * cfg.seq_len
        log.add(loss, position.step, position.tokens, lr, finished(cfg, position))
        stop = out_of_time(cfg, log, ranks)
        timed = time.perf_counter() - t_checkpoint >= 60 * cfg.checkpoint_minutes
        due = position.step % cfg.checkpoint_every == 0 or finished(cfg, position) or stop or timed
        if ranks.master and due:
            save_checkpoint(out, position.step, model, optimizer, cfg, position.tokens, log.elapsed(),
                            position.warmup_from)
            t_checkpoint = time.perf_counter()
        if stop:
            if ranks.master:
                print(f"time limit of {cfg.time_limit_min} min reached at step {position.step} "
                      f"({position.tokens:,} tokens); continue with --resume")
            break
    log.close()

    summary = {"steps": position.step, "tokens": position.tokens, "final_loss": log.last_loss,
               "world_size": ranks.world, "objective": cfg.objective, "bf16": bf16}
    if ranks.master:
        finish(cfg, out, model, config, shards, log, summary)
    if ranks.distributed:
        dist.barrier()
        dist.destroy_process_group()
    return summary
