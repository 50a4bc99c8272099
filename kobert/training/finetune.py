"""Fine-tune a KoBERT checkpoint on NSMC (Naver movie review sentiment, 2 labels) and report test accuracy.

NSMC files are TSVs with a header `id  document  label`; documents may be CSV-quoted
and a few are empty. They are read from a local directory (`--nsmc-dir`, else
$KOBERT_NSMC_DIR, else `../shared/data/nsmc` next to the repository), or downloaded
from the dataset's official location when that fails and the machine is online.
"""

from __future__ import annotations

import csv
import json
import os
import random
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kobert.datasets import (  # noqa: F401  (the one NSMC reader, re-exported for callers of this module)
    ID2LABEL, LabelledTexts, default_nsmc_dir, download_nsmc, locate_nsmc, read_nsmc,
)


def _load_tokenizer(checkpoint_dir: Path):
    from kobert.tokenizer import get_tokenizer

    has_own = (checkpoint_dir / "tokenizer.json").is_file() or any(checkpoint_dir.glob("*.model"))
    return get_tokenizer(checkpoint_dir if has_own else None)


def _batches(encoded: list[list[int]], labels: list[int], order: list[int], batch_size: int, pad_id: int):
    import torch

    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        width = max(len(encoded[j]) for j in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        for row, j in enumerate(idx):
            ids[row, :len(encoded[j])] = torch.tensor(encoded[j])
        yield ids, (ids != pad_id).long(), torch.tensor([labels[j] for j in idx])


def finetune_nsmc(
    checkpoint_dir: str | Path,
    out_dir: str | Path,
    nsmc_dir: str | Path | None = None,
    epochs: int = 2,
    max_length: int = 128,
    batch_size: int = 32,
    lr: float = 5e-5,
    limit: int | None = None,
    train_limit: int | None = None,
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.01,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> dict:
    """Train a 2-label sequence classifier on NSMC train, evaluate accuracy on NSMC test.

    Writes a Hugging Face BertForSequenceClassification checkpoint (safetensors, config with
    id2label negative/positive) and the tokenizer files to `out_dir`, plus `eval.json`.
    `limit` caps both the train and the test examples (for smoke runs); `train_limit` caps
    only the training examples, so that accuracy is still measured on the whole test set.
    """
    import torch
    import transformers

    checkpoint_dir, out = Path(checkpoint_dir), Path(out_dir)
    if not (checkpoint_dir / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint_dir}: no config.json (not a Hugging Face checkpoint directory)")
    data_dir = locate_nsmc(nsmc_dir)
    caps = [n for n in (limit, train_limit) if n is not None]
    train = read_nsmc(data_dir / NSMC_FILES["train"], min(caps) if caps else None)
    test = read_nsmc(data_dir / NSMC_FILES["test"], limit)

    random.seed(seed)
    torch.manual_seed(seed)
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dev = torch.device("cuda" if use_cuda else "cpu")
    tokenizer = _load_tokenizer(checkpoint_dir)
    model = transformers.BertForSequenceClassification.from_pretrained(
        str(checkpoint_dir), num_labels=2, id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()},
        attn_implementation="sdpa",
    ).to(dev)
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"{checkpoint_dir}: tokenizer has {len(tokenizer)} ids but the model only {model.config.vocab_size}")
    if max_length > model.config.max_position_embeddings:
        raise ValueError(f"max_length={max_length} exceeds the model's {model.config.max_position_embeddings} positions")

    def encode(texts):
        return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]

    train_ids, test_ids = encode(train.texts), encode(test.texts)
    pad_id = tokenizer.pad_token_id
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "LayerNorm" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    total = epochs * -(-len(train) // batch_size)
    warmup = max(1, int(warmup_ratio * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_cuda else torch.autocast("cpu", enabled=False)
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="step", dynamic_ncols=True)
        except ImportError:
            pass

    started = time.perf_counter()
    model.train()
    loss_value = float("nan")
    for epoch in range(epochs):
        order = list(range(len(train)))
        random.Random(seed + epoch).shuffle(order)
        for ids, mask, labels in _batches(train_ids, train.labels, order, batch_size, pad_id):
            with autocast:
                logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), labels.to(dev))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            loss_value = loss.item()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_value:.3f}", refresh=False)
    if bar is not None:
        bar.close()
    train_seconds = time.perf_counter() - started

    accuracy = evaluate(model, test_ids, test.labels, batch_size * 2, pad_id, dev, autocast)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    result = {
        "task": "nsmc",
        "accuracy": accuracy,
        "test_examples": len(test),
        "train_examples": len(train),
        "epochs": epochs,
        "max_length": max_length,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "final_train_loss": loss_value,
        "train_seconds": round(train_seconds, 1),
        "checkpoint": str(checkpoint_dir),
        "nsmc_dir": str(data_dir),
        "device": str(dev),
    }
    (out / "eval.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    return result


def evaluate(model, encoded, labels, batch_size, pad_id, device, autocast) -> float:
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for ids, mask, gold in _batches(encoded, labels, list(range(len(encoded))), batch_size, pad_id):
            with autocast:
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            correct += int((logits.argmax(-1).cpu() == gold).sum())
    model.train()
    return correct / len(encoded)
