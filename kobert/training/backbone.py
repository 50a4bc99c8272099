"""The shipped backbone: publish a pretraining run into `kobert/assets/backbone`, and score it held out.

    kobert backbone publish RUN [--out kobert/assets/backbone] [--heldout-nsmc FILE]

What lands (weights only, no optimizer state, so the repository stays lean):

- `model.safetensors`, `config.json`, tokenizer files: the run's exported encoder, loadable with
  plain `transformers.AutoModel` and as `--checkpoint backbone`;
- `pretrain_weights.safetensors` (ELECTRA runs): the generator and the replaced-token-detection
  head, which a continuation needs and a fine-tune does not;
- `state.json`: step (the data position: step s always draws the same batch), tokens seen, wall
  time, the recipe, one row per publishing session, held-out accuracy. `kobert pretrain
  --init-from kobert/assets/backbone` continues from it on any machine with a fresh optimizer;
- `loss.png`: the run's loss curve.

The folder is written beside the destination and renamed into place, so a kill never leaves half
a backbone.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from kobert.bench import cpu_info
from kobert.staging import move_into_place, staging_folder
from kobert.training.pretrain import (IGNORE_INDEX, PretrainConfig, build_pretraining_model, latest_checkpoint,
                                      mask_tokens, plot_loss, read_log)

RECIPE_KEYS = ("objective", "preset", "model", "seed", "batch_size", "seq_len", "mask_prob", "lr", "schedule",
               "warmup_tokens", "decay_tokens", "min_lr", "weight_decay", "betas", "eps", "dropout",
               "generator_fraction", "rtd_weight", "precision", "max_tokens")


def heldout_accuracy(run: Path, texts: list[str], seq_len: int = 128, seed: int = 0, limit: int = 2000) -> dict:
    """Masked-token accuracy (and, for ELECTRA, replaced-token-detection accuracy) on texts never
    pretrained on, with the run's latest checkpoint, 15 % masking, seeded: comparable across runs."""
    import torch

    from kobert.tokenizer import get_tokenizer
    from kobert.training.pretrain import _load_model_state

    cfg = PretrainConfig(**{**json.loads((run / "pretrain_config.json").read_text(encoding="utf-8")),
                            "resume": False, "branch_from": None, "init_from": None})
    tokenizer = get_tokenizer(run / "model")
    model = build_pretraining_model(cfg.model_config(len(tokenizer)), cfg)
    _load_model_state(model, latest_checkpoint(run) / "model.safetensors")
    model.eval()
    enc = tokenizer(texts[:limit], truncation=True, max_length=seq_len, padding=True, return_tensors="np")
    ids = enc["input_ids"]
    special = tuple(tokenizer.convert_tokens_to_ids(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    mask_id = tokenizer.convert_tokens_to_ids("[MASK]")
    inputs, labels = mask_tokens(ids, np.random.default_rng(seed), 0.15, mask_id, special, (5, len(tokenizer)))
    where = torch.from_numpy(labels != IGNORE_INDEX)
    x, y = torch.from_numpy(inputs), torch.from_numpy(labels)
    attention = torch.from_numpy(enc["attention_mask"])
    correct = total = rtd_correct = rtd_total = 0
    torch.manual_seed(seed)
    with torch.no_grad():
        for i in range(0, len(ids), 64):
            part = slice(i, i + 64)
            w = where[part]
            if cfg.objective == "electra":
                gen = model["generator"]
                hidden = gen.electra(input_ids=x[part], attention_mask=attention[part]).last_hidden_state
                logits = gen.generator_lm_head(gen.generator_predictions(hidden[w]))
                # RTD on the generator's samples, exactly as in training
                corrupted = torch.from_numpy(ids[part]).clone()
                probs = torch.softmax(logits.float(), -1)
                corrupted[w] = torch.multinomial(probs, 1).squeeze(-1)
                replaced = corrupted != torch.from_numpy(ids[part])
                disc = model["bert"](input_ids=corrupted, attention_mask=attention[part]).last_hidden_state
                real = attention[part].bool()
                guess = model["rtd_head"](disc[real]).squeeze(-1) > 0
                rtd_correct += int((guess == replaced[real]).sum())
                rtd_total += int(real.sum())
            else:
                hidden = model.bert(input_ids=x[part], attention_mask=attention[part]).last_hidden_state
                logits = model.cls(hidden[w])
            correct += int((logits.argmax(-1) == y[part][w]).sum())
            total += int(w.sum())
    result = {"texts": min(limit, len(texts)), "masked_tokens": total,
              ("mlm_accuracy" if cfg.objective == "mlm" else "generator_mlm_accuracy"): round(correct / max(1, total), 4)}
    if rtd_total:
        result["rtd_accuracy"] = round(rtd_correct / rtd_total, 4)
    return result


def publish_backbone(run: str | Path, dest: str | Path, heldout: dict | None = None, note: str = "") -> dict:
    """Copy run/model (+ generator weights, state.json, loss.png) into `dest`, atomically."""
    from safetensors.torch import load_file, save_file

    run, dest = Path(run), Path(dest)
    ckpt = latest_checkpoint(run)
    if ckpt is None or not (run / "model" / "config.json").is_file():
        raise FileNotFoundError(f"{run}: needs checkpoints/latest and model/ (a finished or time-limited `kobert pretrain`)")
    trainer = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    cfg = trainer["config"]
    state = _backbone_state(run, dest, trainer, heldout, note)
    with staging_folder(dest) as staging:
        shutil.copytree(run / "model", staging, dirs_exist_ok=True)
        if cfg.get("objective") == "electra":
            extras = {k: v for k, v in load_file(str(ckpt / "model.safetensors")).items() if not k.startswith("bert.")}
            save_file(extras, str(staging / "pretrain_weights.safetensors"), metadata={"format": "pt"})
        if (run / "log.csv").is_file():
            plot_loss(run / "log.csv", staging / "loss.png",
                      ylabel="ELECTRA loss (MLM + 50 x RTD)" if cfg.get("objective") == "electra" else "MLM loss",
                      title="backbone pretraining loss")
        (staging / "state.json").write_text(json.dumps(state, indent=2, ensure_ascii=False), encoding="utf-8")
        if (dest / "CARD.md").is_file():
            shutil.copy2(dest / "CARD.md", staging / "CARD.md")
        _keep_published_tokenizer(dest, staging)
        move_into_place(staging, dest)
    return state


def _keep_published_tokenizer(dest: Path, staging: Path) -> None:
    """Keep the tokenizer `dest` already ships when its vocabulary is the run's.

    A run saves the tokenizer it trained with, which may be an older serialisation of the same
    vocabulary (Metaspace split=False, whose word_ids() break transformers' pipelines). Same pieces,
    same ids: the published file stays. A different vocabulary is the run's own, and replaces it.
    """
    shipped, trained = dest / "tokenizer.json", staging / "tokenizer.json"
    if not (shipped.is_file() and trained.is_file()):
        return
    def vocab(path):
        return json.loads(path.read_text(encoding="utf-8"))["model"]["vocab"]

    if vocab(shipped) == vocab(trained):
        shutil.copy2(shipped, trained)


def _backbone_state(run: Path, dest: Path, trainer: dict, heldout: dict | None, note: str) -> dict:
    """state.json: where the run stands, its recipe, and one row per publishing session (the earlier ones kept)."""
    cfg = trainer["config"]
    previous = json.loads((dest / "state.json").read_text(encoding="utf-8")) if (dest / "state.json").is_file() else {}
    rows = read_log(run / "log.csv")
    session = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_info()["model"], "run": run.name,
               "tokens_at_end": trainer["tokens"], "step_at_end": trainer["step"],
               "tokens_per_s_median": round(float(np.median([r["tokens_per_s"] for r in rows[1:]])), 1) if len(rows) > 1 else None,
               "note": note}
    return {
        "step": trainer["step"], "tokens": trainer["tokens"], "elapsed_s": round(trainer["elapsed_s"], 1),
        "recipe": {k: cfg[k] for k in RECIPE_KEYS if k in cfg},
        "heldout": heldout or {},
        "sessions": previous.get("sessions", []) + [session],
        "continue_with": "kobert pretrain --init-from kobert/assets/backbone (same recipe; fresh optimizer, re-warm-up)",
    }


def grow_backbone(src: str | Path, dest: str | Path, layers: int) -> dict:
    """A deeper backbone made by stacking (Gong et al. 2019, "Efficient Training of BERT by Progressively
    Stacking"): layer i of the new encoder starts as trained layer i mod n. Everything else (embeddings,
    MLM head, tokenizer, state.json's data position) is the source's, so `kobert pretrain --init-from DEST
    --layers N` continues it where the source stood. Written beside `dest` and renamed into place.
    """
    from safetensors.torch import load_file, save_file

    src, dest = Path(src), Path(dest)
    if not (src / "state.json").is_file() or not (src / "model.safetensors").is_file():
        raise FileNotFoundError(f"{src}: not a committed backbone (needs model.safetensors and state.json)")
    if dest.exists():
        raise FileExistsError(f"{dest}: already exists; grow into a new folder")
    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    have = int(config["num_hidden_layers"])
    if layers <= have:
        raise ValueError(f"--layers {layers}: the backbone already has {have} layers; growing needs more")
    tensors = load_file(str(src / "model.safetensors"))
    prefix = "bert.encoder.layer."
    grown = {k: v for k, v in tensors.items() if not k.startswith(prefix)}
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, rest = key[len(prefix):].split(".", 1)
            for new in range(int(index), layers, have):  # layer i starts as layer i mod have
                grown[f"{prefix}{new}.{rest}"] = value.clone().contiguous()
    state = json.loads((src / "state.json").read_text(encoding="utf-8"))
    state["grown"] = {"from": str(src), "layers": [have, layers], "rule": "layer i = trained layer i mod %d" % have}
    with staging_folder(dest) as staging:
        save_file(grown, str(staging / "model.safetensors"), metadata={"format": "pt"})
        (staging / "config.json").write_text(json.dumps({**config, "num_hidden_layers": layers}, indent=2), encoding="utf-8")
        (staging / "state.json").write_text(json.dumps(state, indent=2, ensure_ascii=False), encoding="utf-8")
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (src / name).is_file():
                shutil.copy2(src / name, staging / name)
        move_into_place(staging, dest)
    return state
