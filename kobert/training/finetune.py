"""Fine-tune a KoBERT checkpoint on a Korean task and score it: `kobert finetune nsmc|ynat|ner|sts|qa`.

| task | data (kobert.datasets) | head | trained on | scored on |
|---|---|---|---|---|
| nsmc | NSMC sentiment | 2-label sequence classification | ratings_train | ratings_test: accuracy |
| ynat | KLUE YNAT news titles | 7-label sequence classification | train | dev: macro-F1 |
| ner | KMOU 2016klp | token classification, B-/I- of PS LC OG DT TI | ner.train | ner.test: strict entity F1 |
| sts | KorSTS | 1-label regression on the pair (cross-encoder) | sts-train | sts-test: Spearman |
| qa | KorQuAD 1.0 dev, split by article | start/end span | 80 % of articles | the rest: EM / F1 |

Texts are encoded by the same `TextEncoder` the runtimes use; the final score is
computed by `kobert.evaluate` through an in-memory runtime, so it is the code
that `kobert eval` runs on the export. A run folder holds the model
(config.json, model.safetensors, tokenizer files), eval.json, log.csv (loss per
logged step), loss.png, and checkpoints/ (written to a temporary folder and
renamed into place, as pretraining's are).
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kobert.datasets import (  # noqa: F401  (the one NSMC reader, re-exported for callers of this module)
    DOWNLOAD_CACHE, ID2LABEL, NER_LABELS, NSMC_FILES, YNAT_LABELS, LabelledTexts, default_nsmc_dir, download_nsmc,
    locate_nsmc, read_nsmc, read_task,
)

LOG_FIELDS = ("step", "epoch", "loss", "lr", "elapsed_s")
IGNORE_INDEX = -100


@dataclass(frozen=True)
class FinetuneTask:
    name: str
    head: str
    labels: tuple[str, ...]  # id2label names; one name: a regression head; QA: ("start", "end")
    summary: str


TASKS = {
    "nsmc": FinetuneTask("nsmc", "sequence_classification", (ID2LABEL[0], ID2LABEL[1]),
                         "NSMC movie-review sentiment (2 labels): train on ratings_train, accuracy on ratings_test"),
    "ynat": FinetuneTask("ynat", "sequence_classification", YNAT_LABELS,
                         "KLUE YNAT news-title topics (7 labels): train on train, macro-F1 on dev"),
    "ner": FinetuneTask("ner", "token_classification", NER_LABELS,
                        "KMOU 2016klp named entities (B-/I- of PS LC OG DT TI): strict entity F1 on ner.test"),
    "sts": FinetuneTask("sts", "sequence_classification", ("similarity",),
                        "KorSTS sentence similarity (1-label regression on the pair): Spearman on sts-test"),
    "qa": FinetuneTask("qa", "question_answering", ("start", "end"),
                       "KorQuAD 1.0 (dev split by article, 80 %% train): EM/F1 on the held-out articles"),
}


@dataclass
class FinetuneConfig:
    """What a run was asked to do (saved in each checkpoint's trainer_state.json)."""

    task: str
    checkpoint: str
    out: str
    data_dir: str | None = None  # the shared data folder (default: kobert.datasets.default_data_dir())
    nsmc_dir: str | None = None  # NSMC only: a folder with ratings_{train,test}.txt (default: locate_nsmc())
    epochs: int = 2
    max_steps: int | None = None  # stop after this many optimizer steps (smoke runs)
    max_length: int = 128  # tokens per text (QA: per window, question included)
    doc_stride: int = 128  # QA: overlap of a context's windows
    batch_size: int = 32
    lr: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    limit: int | None = None  # first N train and N eval examples
    train_limit: int | None = None  # first N train examples only
    seed: int = 0
    device: str = "auto"
    log_every: int = 10
    checkpoint_every: int | None = None  # steps; default: once per epoch
    keep_checkpoints: int = 1
    progress: bool = True
    precision: str = "auto"  # auto (bf16 autocast where the CPU has bf16) | bf16 | fp32
    group_by_length: bool = False  # batches of similar length (transformers' group_by_length): less padding
    extra: dict = field(default_factory=dict)


def _load_tokenizer(checkpoint_dir: Path):
    from kobert.tokenizer import get_tokenizer

    has_own = (checkpoint_dir / "tokenizer.json").is_file() or any(checkpoint_dir.glob("*.model"))
    return get_tokenizer(checkpoint_dir if has_own else None)


# --- examples -> features ------------------------------------------------------------------


@dataclass
class Feature:
    ids: list[int]
    types: list[int]
    target: object  # a label id, a float score, per-token label ids, or (start token, end token)


def build_features(task: str, data, encoder, max_length: int, doc_stride: int) -> list[Feature]:
    from kobert import tasks

    if task in ("nsmc", "ynat"):
        return [Feature(e.ids, e.type_ids, label) for e, label in zip(encoder.encodings(data.texts), data.labels)]
    if task == "sts":
        encodings = encoder.encodings(data.firsts, data.seconds)
        return [Feature(e.ids, e.type_ids, float(score)) for e, score in zip(encodings, data.scores)]
    if task == "ner":
        label2id = {name: i for i, name in enumerate(NER_LABELS)}
        features = []
        for sentence, e in zip(data, encoder.encodings([s.text for s in data])):
            tags = tasks.token_tags(sentence.text, e, sentence.spans)
            features.append(Feature(e.ids, e.type_ids, [IGNORE_INDEX if t is None else label2id[t] for t in tags]))
        return features
    if task == "qa":
        doc_stride = min(doc_stride, max_length // 2)  # as evaluation cuts it (kobert.tasks.iter_answers)
        windows = encoder.windows([x.question for x in data], [x.context for x in data], max_length, doc_stride)
        features = []
        for example, example_windows in zip(data, windows):
            text, start = example.answers[0]
            for e in example_windows:
                features.append(Feature(e.ids, e.type_ids, tasks.answer_tokens(e, start, start + len(text))))
        return features
    raise ValueError(f"unknown task {task!r}")


def length_grouped(order: list[int], features: list[Feature], batch_size: int, rng) -> list[int]:
    """`order` regrouped so that each batch holds texts of similar length, the batches in random order.

    Sorting within chunks of 50 batches (as transformers' `group_by_length` does with its mega-batches)
    keeps the data shuffled while a batch pads to about its own length: NSMC reviews average 24 tokens
    but a random batch of 32 pads to 63.
    """
    chunk = batch_size * 50
    groups = []
    for i in range(0, len(order), chunk):
        part = sorted(order[i:i + chunk], key=lambda j: len(features[j].ids))
        groups += [part[k:k + batch_size] for k in range(0, len(part), batch_size)]
    full = [g for g in groups if len(g) == batch_size]
    rng.shuffle(full)
    return [j for g in full + [g for g in groups if len(g) < batch_size] for j in g]


def batches(features: list[Feature], order: list[int], batch_size: int, pad_id: int, task: str):
    import torch

    for i in range(0, len(order), batch_size):
        rows = [features[j] for j in order[i:i + batch_size]]
        width = max(len(f.ids) for f in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        types = torch.zeros_like(ids)
        mask = torch.zeros_like(ids)
        for r, f in enumerate(rows):
            ids[r, :len(f.ids)] = torch.tensor(f.ids)
            types[r, :len(f.ids)] = torch.tensor(f.types)
            mask[r, :len(f.ids)] = 1
        if task == "ner":
            target = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
            for r, f in enumerate(rows):
                target[r, :len(f.target)] = torch.tensor(f.target)
        elif task == "sts":
            target = torch.tensor([f.target for f in rows], dtype=torch.float32)
        elif task == "qa":
            target = torch.tensor([f.target for f in rows], dtype=torch.long)
        else:
            target = torch.tensor([f.target for f in rows], dtype=torch.long)
        yield {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}, target


def task_loss(task: str, output, target):
    import torch.nn.functional as F

    if task == "sts":
        return F.mse_loss(output.logits.float().squeeze(-1), target)
    if task == "ner":
        logits = output.logits.float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE_INDEX)
    if task == "qa":
        return (F.cross_entropy(output.start_logits.float(), target[:, 0])
                + F.cross_entropy(output.end_logits.float(), target[:, 1])) / 2
    return F.cross_entropy(output.logits.float(), target)


# --- the run --------------------------------------------------------------------------------


def build_model(task: FinetuneTask, checkpoint_dir: Path):
    """The checkpoint's encoder under a new head for the task (a head of another shape is replaced)."""
    import transformers

    from kobert.config import HEAD_SPECS

    model_class = getattr(transformers, HEAD_SPECS[task.head].architecture)
    labels = {} if task.head == "question_answering" else {
        "id2label": dict(enumerate(task.labels)), "label2id": {name: i for i, name in enumerate(task.labels)}}
    extra = {"problem_type": "regression"} if len(task.labels) == 1 else {}
    return model_class.from_pretrained(str(checkpoint_dir), num_labels=len(task.labels), ignore_mismatched_sizes=True,
                                       attn_implementation="sdpa", **labels, **extra)


def finetune(cfg: FinetuneConfig) -> dict:
    """Train the task's head and the encoder on its train split, score on its eval split; see the module doc."""
    import torch

    task, checkpoint_dir = _task_checkpoint(cfg)
    out = Path(cfg.out)
    caps = [n for n in (cfg.limit, cfg.train_limit) if n is not None]
    train = _read(cfg, "train", min(caps) if caps else None)
    evaluation = _read(cfg, "eval", cfg.limit)

    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    model = build_model(task, checkpoint_dir).to(device)
    encoder = _task_encoder(cfg, checkpoint_dir, model, out)
    features = build_features(cfg.task, train, encoder, cfg.max_length, cfg.doc_stride)
    run = _training(cfg, model, device, use_cuda, len(features))
    step, last_loss, train_seconds = _train(cfg, run, features, encoder.pad_id, out)
    _save_trained(cfg, model, out)
    return _score(cfg, model, out, evaluation, device, {
        "train_examples": len(train), "train_features": len(features), "steps": step,
        "final_train_loss": last_loss, "train_seconds": round(train_seconds, 1)})


def _task_checkpoint(cfg: FinetuneConfig) -> tuple[FinetuneTask, Path]:
    from kobert.checkpoint import resolve

    if cfg.task not in TASKS:
        raise ValueError(f"unknown task {cfg.task!r}; expected one of {', '.join(TASKS)}")
    checkpoint_dir, _ = resolve(cfg.checkpoint)
    if not (checkpoint_dir / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint_dir}: no config.json (not a Hugging Face checkpoint directory)")
    return TASKS[cfg.task], checkpoint_dir


def _task_encoder(cfg: FinetuneConfig, checkpoint_dir: Path, model, out: Path):
    """The checkpoint's tokenizer, checked against the model, saved into `out` at the training length."""
    from kobert.encoding import TextEncoder

    tokenizer = _load_tokenizer(checkpoint_dir)
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"{checkpoint_dir}: tokenizer has {len(tokenizer)} ids but the model only {model.config.vocab_size}")
    if cfg.max_length > model.config.max_position_embeddings:
        raise ValueError(f"max_length={cfg.max_length} exceeds the model's {model.config.max_position_embeddings} positions")
    # The runtimes encode at the tokenizer's model_max_length: the length this model is trained at.
    tokenizer.model_max_length = cfg.max_length
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out))
    return TextEncoder(out, cfg.max_length, model.config.vocab_size)


@dataclass
class _Training:
    """What the loop works on: the model on its device, AdamW with its schedule, the step budget, the autocast."""

    model: object
    device: object
    optimizer: object
    schedule: object
    total: int  # optimizer steps
    per_epoch: int
    autocast: object


def _training(cfg: FinetuneConfig, model, device, use_cuda: bool, n_features: int) -> _Training:
    """AdamW (no decay on biases and LayerNorm), linear warmup then linear decay to 0 at the last step."""
    import torch

    from kobert.training.pretrain import use_bf16

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "LayerNorm" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    per_epoch = -(-n_features // cfg.batch_size)
    total = min(cfg.epochs * per_epoch, cfg.max_steps or cfg.epochs * per_epoch)
    warmup = max(1, int(cfg.warmup_ratio * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    # bf16 autocast on CPUs with AMX-BF16/AVX512-BF16 (fp32 master weights): ~2.5x per step here.
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16(cfg.precision, use_cuda))
    return _Training(model, device, optimizer, schedule, total, per_epoch, autocast)


def _train(cfg: FinetuneConfig, run: _Training, features: list[Feature], pad_id: int,
           out: Path) -> tuple[int, float, float]:
    """The loop: each epoch's shuffled batches, a log row every `log_every` steps, checkpoints; (steps, last
    logged loss, seconds)."""
    from kobert.training.pretrain import save_checkpoint

    checkpoint_every = cfg.checkpoint_every or run.per_epoch
    log_file = out / "log.csv"
    with open(log_file, "w", newline="") as f:
        csv.writer(f).writerow(LOG_FIELDS)
    bar = _progress_bar(run.total, f"finetune {cfg.task}") if cfg.progress else None

    started = time.perf_counter()
    step, loss_sum, since_log, last_loss = 0, 0.0, 0, float("nan")
    run.model.train()
    for epoch in range(cfg.epochs):
        order = list(range(len(features)))
        random.Random(cfg.seed + epoch).shuffle(order)
        if cfg.group_by_length:
            order = length_grouped(order, features, cfg.batch_size, random.Random(cfg.seed + epoch))
        for inputs, target in batches(features, order, cfg.batch_size, pad_id, cfg.task):
            if step >= run.total:
                break
            loss = _train_step(cfg.task, run, inputs, target)
            step += 1
            loss_sum, since_log = loss_sum + loss, since_log + 1
            if step % cfg.log_every == 0 or step == run.total:
                last_loss, loss_sum, since_log = loss_sum / since_log, 0.0, 0
                with open(log_file, "a", newline="") as f:
                    csv.writer(f).writerow([step, epoch + 1, f"{last_loss:.6f}",
                                            f"{run.schedule.get_last_lr()[0]:.6e}",
                                            f"{time.perf_counter() - started:.1f}"])
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}", refresh=False)
            if step % checkpoint_every == 0 or step == run.total:
                save_checkpoint(out, step, run.model, run.optimizer, cfg, 0, time.perf_counter() - started)
    if bar is not None:
        bar.close()
    return step, last_loss, time.perf_counter() - started


def _train_step(task: str, run: _Training, inputs: dict, target) -> float:
    """One clipped AdamW step on one batch; its loss."""
    import torch

    with run.autocast:
        output = run.model(**{k: v.to(run.device) for k, v in inputs.items()})
    loss = task_loss(task, output, target.to(run.device))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
    run.optimizer.step()
    run.schedule.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss.item()


def _save_trained(cfg: FinetuneConfig, model, out: Path) -> None:
    from kobert.training.pretrain import plot_loss

    if not cfg.progress:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    _save_model(model, out)
    plot_loss(out / "log.csv", out / "loss.png", ylabel=f"{cfg.task} training loss",
              title=f"fine-tuning loss ({cfg.task})")


def _score(cfg: FinetuneConfig, model, out: Path, evaluation, device, training: dict) -> dict:
    """The eval split scored by `kobert.evaluate` through an in-memory runtime; eval.json."""
    from kobert.config import KoBertConfig
    from kobert.evaluate import TASK_METRICS, predict_task, score
    from kobert.runtimes.torch import InMemoryRuntime

    config = KoBertConfig.from_file(out / "config.json")
    eval_runtime = InMemoryRuntime(model, config, out, 512 if cfg.task == "qa" else cfg.max_length)
    predictions = predict_task(cfg.task, eval_runtime, evaluation, batch_size=cfg.batch_size * 2)
    metrics = score(cfg.task, predictions, evaluation)
    result = {"task": cfg.task, "metric": TASK_METRICS[cfg.task][0], **metrics,
              "eval_examples": len(evaluation), **training, "device": str(device), "config": asdict(cfg)}
    if cfg.task == "qa":
        result["note"] = ("KorQuAD 1.0 dev split by article (seed 0, 80 % of articles for training): "
                          "not comparable to published dev scores")
    (out / "eval.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    return result


def _read(cfg: FinetuneConfig, split: str, limit: int | None):
    if cfg.task == "nsmc" and cfg.nsmc_dir:
        return read_nsmc(locate_nsmc(cfg.nsmc_dir) / NSMC_FILES["train" if split == "train" else "test"], limit)
    return read_task(cfg.task, split, cfg.data_dir, limit)


def _progress_bar(total: int, what: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="step", desc=what, dynamic_ncols=True)


def _save_model(model, out: Path) -> None:
    """config.json + model.safetensors into `out`, each file swapped in whole (a kill leaves the old one)."""
    staging = out / ".model-tmp"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging), safe_serialization=True)
    for f in staging.iterdir():
        os.replace(f, out / f.name)
    staging.rmdir()


def finetune_nsmc(checkpoint_dir: str | Path, out_dir: str | Path, nsmc_dir: str | Path | None = None,
                  epochs: int = 2, max_length: int = 128, batch_size: int = 32, lr: float = 5e-5,
                  limit: int | None = None, train_limit: int | None = None, warmup_ratio: float = 0.1,
                  weight_decay: float = 0.01, seed: int = 0, device: str = "auto", progress: bool = True,
                  group_by_length: bool = False) -> dict:
    """NSMC: train on ratings_train, accuracy on ratings_test (`finetune` with task "nsmc").

    `nsmc_dir` holds ratings_{train,test}.txt; `limit` caps both splits, `train_limit`
    only the training examples, so that accuracy is still measured on the whole test set.
    """
    data_dir = locate_nsmc(nsmc_dir)
    cfg = FinetuneConfig("nsmc", str(checkpoint_dir), str(out_dir), nsmc_dir=str(data_dir), epochs=epochs,
                         max_length=max_length, batch_size=batch_size, lr=lr, warmup_ratio=warmup_ratio,
                         weight_decay=weight_decay, limit=limit, train_limit=train_limit, seed=seed, device=device,
                         progress=progress, group_by_length=group_by_length)
    result = finetune(cfg)
    result.update({"accuracy": result["accuracy"] / 100, "test_examples": result["eval_examples"],
                   "nsmc_dir": str(data_dir)})
    (Path(out_dir) / "eval.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    return result
