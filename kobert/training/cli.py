"""`kobert shards`, `kobert pretrain`, `kobert finetune nsmc|ynat|ner|sts|qa`: parse, call one library function, print.

`add_training_commands` plugs these into the main `kobert` parser. This module also runs
on its own, which is how torchrun starts a data-parallel pretraining run:

    torchrun --nproc-per-node 2 -m kobert.training.cli pretrain --shards DIR --out DIR ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kobert.arguments import positive_float, positive_int


def cmd_shards(args) -> int:
    from kobert.training.corpus import build_shards

    meta = build_shards(args.corpus, args.out, tokenizer=args.tokenizer, splitter=args.splitter,
                        workers=args.workers, shard_tokens=args.shard_tokens, min_chars=args.min_chars,
                        max_documents=args.max_documents, progress=not args.quiet)
    print(f"wrote {meta['tokens']:,} tokens ({meta['documents']:,} documents, {meta['sentences']:,} sentences, "
          f"{len(meta['shards'])} shard(s), splitter {meta['sentence_splitter']}) to {args.out}")
    return 0


def cmd_pretrain(args) -> int:
    from kobert.training.pretrain import PretrainConfig, pretrain

    model = {k: v for k, v in (("hidden_size", args.hidden_size), ("num_hidden_layers", args.layers),
                               ("num_attention_heads", args.heads), ("intermediate_size", args.intermediate_size))
             if v is not None}
    cfg = PretrainConfig(
        shards=args.shards, out=args.out, preset=args.preset, model=model, steps=args.steps,
        batch_size=args.batch_size, grad_accum=args.grad_accum, seq_len=args.seq_len, lr=args.lr,
        warmup_steps=args.warmup_steps, weight_decay=args.weight_decay, grad_clip=args.grad_clip,
        mask_prob=args.mask_prob, dropout=args.dropout, seed=args.seed, checkpoint_every=args.checkpoint_every,
        log_every=args.log_every, device=args.device, compile=args.compile, resume=args.resume,
        progress=not args.quiet,
        objective=args.objective, generator_fraction=args.generator_fraction, rtd_weight=args.rtd_weight,
        precision=args.precision, schedule=args.schedule, warmup_tokens=args.warmup_tokens,
        decay_tokens=args.decay_tokens, min_lr=args.min_lr, max_tokens=args.max_tokens,
        time_limit_min=args.time_limit_min, checkpoint_minutes=args.checkpoint_minutes, init_from=args.init_from,
        branch_from=args.branch_from,
    )
    summary = pretrain(cfg)
    if "model_dir" in summary:  # rank 0 only
        print(json.dumps(summary, indent=2))
    return 0


def cmd_finetune_nsmc(args) -> int:
    from kobert.training.finetune import finetune_nsmc

    result = finetune_nsmc(args.checkpoint, args.out, nsmc_dir=args.nsmc_dir, epochs=args.epochs,
                           max_length=args.max_length, batch_size=args.batch_size, lr=args.lr, limit=args.limit,
                           train_limit=args.train_limit, seed=args.seed, device=args.device, progress=not args.quiet,
                           group_by_length=args.group_by_length)
    print(f"NSMC test accuracy {result['accuracy']:.4f} on {result['test_examples']:,} reviews; "
          f"wrote the classifier and eval.json to {args.out}")
    return 0


def cmd_finetune_task(args) -> int:
    from kobert.training.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(args.task, args.checkpoint, args.out, data_dir=args.data_dir, epochs=args.epochs,
                         max_steps=args.max_steps, max_length=args.max_length, doc_stride=args.doc_stride,
                         batch_size=args.batch_size, lr=args.lr, limit=args.limit, train_limit=args.train_limit,
                         seed=args.seed, device=args.device, log_every=args.log_every,
                         checkpoint_every=args.checkpoint_every, progress=not args.quiet,
                         group_by_length=args.group_by_length)
    result = finetune(cfg)
    print(f"{args.task}: {result['metric']} {result[result['metric']]:.2f} on {result['eval_examples']:,} eval "
          f"examples after {result['steps']} steps; wrote the model, eval.json, log.csv and loss.png to {args.out}")
    if "note" in result:
        print(f"note: {result['note']}")
    return 0


def cmd_backbone_publish(args) -> int:
    from kobert.datasets import read_nsmc
    from kobert.training.backbone import heldout_accuracy, publish_backbone

    heldout = None
    if args.heldout_nsmc:
        texts = read_nsmc(args.heldout_nsmc).texts
        heldout = {"data": args.heldout_nsmc, **heldout_accuracy(Path(args.run), texts)}
    state = publish_backbone(args.run, args.out, heldout, note=args.note)
    print(json.dumps({k: state[k] for k in ("step", "tokens", "elapsed_s", "heldout")}, indent=2, ensure_ascii=False))
    print(f"published {args.run} to {args.out}")
    return 0


def cmd_backbone_grow(args) -> int:
    from kobert.training.backbone import grow_backbone

    state = grow_backbone(args.backbone, args.out, args.layers)
    have, layers = state["grown"]["layers"]
    print(f"grew {args.backbone} from {have} to {layers} layers (stacked) into {args.out}; continue it with "
          f"`kobert pretrain --init-from {args.out} --layers {layers} ...`")
    return 0


def add_training_commands(commands) -> None:
    """Add `shards`, `pretrain`, `backbone` and `finetune` to the `kobert` subparsers."""
    for add in (_add_shards, _add_pretrain, _add_backbone, _add_finetune):
        add(commands)


def _add_shards(commands) -> None:
    p = commands.add_parser("shards", help="tokenize a text corpus once into uint16 shards for pretraining")
    p.add_argument("corpus", nargs="+", metavar="CORPUS", help="text files (plain or .xz), one document per line")
    p.add_argument("--out", required=True)
    p.add_argument("--tokenizer", default=None, help="SentencePiece .model or tokenizer dir (default: shipped)")
    p.add_argument("--splitter", choices=["kiwi", "regex"], default="kiwi",
                   help="sentence splitter (kiwi falls back to regex when kiwipiepy is not installed)")
    p.add_argument("--workers", type=int, default=None, help="tokenizing processes (default: CPU count, at most 8)")
    p.add_argument("--shard-tokens", type=int, default=50_000_000)
    p.add_argument("--min-chars", type=int, default=10, help="drop documents shorter than this after cleaning")
    p.add_argument("--max-documents", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_shards)


def _add_pretrain(commands) -> None:
    p = commands.add_parser("pretrain", help="MLM pretraining on shards (runs under torchrun for several processes)")
    p.add_argument("--shards", required=True, help="directory written by `kobert shards`")
    p.add_argument("--out", required=True, help="run directory: checkpoints/, log.csv, loss.png, model/")
    p.add_argument("--preset", choices=["tiny", "small", "base"], default="small")
    p.add_argument("--hidden-size", type=int, default=None)
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--heads", type=int, default=None)
    p.add_argument("--intermediate-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=128, help="global sequences per step, over all processes")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup-steps", type=int, default=None, help="default: 6%% of --steps")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--mask-prob", type=float, default=0.15)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (GPU runs)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/latest if present")
    p.add_argument("--quiet", action="store_true", help="a log line per --log-every steps instead of a progress bar")
    p.add_argument("--objective", choices=["mlm", "electra"], default="mlm",
                   help="mlm, or electra: replaced-token detection with a small generator (the backbone stays a BertModel)")
    p.add_argument("--generator-fraction", type=float, default=0.5, help="electra: generator width / discriminator width")
    p.add_argument("--rtd-weight", type=float, default=50.0, help="electra: discriminator loss weight")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="auto: bf16 autocast where the CPU has AMX-BF16/AVX512-BF16 (fp32 master weights)")
    p.add_argument("--schedule", choices=["linear", "wsd"], default="linear",
                   help="linear: by steps; wsd: warm-up, stable, decay, keyed to tokens seen")
    p.add_argument("--warmup-tokens", type=int, default=2_000_000, help="wsd: warm-up length in tokens")
    p.add_argument("--decay-tokens", type=int, default=0, help="wsd: decay over the last N tokens of --max-tokens")
    p.add_argument("--min-lr", type=float, default=0.0)
    p.add_argument("--max-tokens", type=int, default=None, help="train until this many tokens seen (overrides --steps)")
    p.add_argument("--time-limit-min", type=float, default=None, help="checkpoint and stop after N minutes")
    p.add_argument("--checkpoint-minutes", type=float, default=10.0, help="also checkpoint every N minutes")
    p.add_argument("--branch-from", default=None,
                   help="start from RUN's latest checkpoint (a release's decay branch); RUN is left as it is")
    p.add_argument("--init-from", default=None,
                   help="continue a committed backbone (dir with state.json) with a fresh optimizer")
    p.set_defaults(func=cmd_pretrain)


def _add_backbone(commands) -> None:
    p = commands.add_parser("backbone", help="publish a pretraining run as the shipped backbone")
    actions = p.add_subparsers(dest="action", required=True)
    b = actions.add_parser("publish", help="copy RUN's encoder, state.json and loss curve into --out, atomically")
    b.add_argument("run", help="a `kobert pretrain` run folder (checkpoints/latest and model/)")
    b.add_argument("--out", default="kobert/assets/backbone")
    b.add_argument("--heldout-nsmc", default=None, help="an NSMC-format TSV never pretrained on: held-out MLM/RTD accuracy")
    b.add_argument("--note", default="", help="a line for this session's row in state.json")
    b.set_defaults(func=cmd_backbone_publish)
    g = actions.add_parser("grow", help="a deeper backbone whose new layers start as copies of the trained ones")
    g.add_argument("backbone", help="a committed backbone folder (model.safetensors and state.json)")
    g.add_argument("--layers", type=int, required=True, help="layers of the grown encoder (more than it has)")
    g.add_argument("--out", required=True, help="a new folder")
    g.set_defaults(func=cmd_backbone_grow)


GROUP_HELP = "batch texts of similar length together (less padding; NSMC trains ~2x faster)"


def _add_finetune(commands) -> None:
    p = commands.add_parser("finetune", help="fine-tune a checkpoint on a downstream task")
    tasks = p.add_subparsers(dest="task", required=True)
    t = tasks.add_parser("nsmc", help="NSMC sentiment (2 labels): train on ratings_train, report test accuracy")
    t.add_argument("--checkpoint", required=True, help="Hugging Face checkpoint dir (e.g. RUN/model from pretrain)")
    t.add_argument("--out", required=True)
    t.add_argument("--nsmc-dir", default=None, help="dir with ratings_{train,test}.txt "
                   "(default: $KOBERT_NSMC_DIR, ../shared/data/nsmc, else download)")
    t.add_argument("--epochs", type=positive_int, default=2)
    t.add_argument("--max-length", type=positive_int, default=128)
    t.add_argument("--batch-size", type=positive_int, default=32)
    t.add_argument("--lr", type=positive_float, default=5e-5)
    t.add_argument("--limit", type=int, default=None, help="use only the first N train and N test reviews")
    t.add_argument("--train-limit", type=int, default=None,
                   help="use only the first N train reviews, still evaluating on the whole test set")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    t.add_argument("--group-by-length", action="store_true", help=GROUP_HELP)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_finetune_nsmc)

    from kobert.training.finetune import TASKS

    for name, task in TASKS.items():
        if name == "nsmc":
            continue
        t = tasks.add_parser(name, help=task.summary)
        t.add_argument("--checkpoint", required=True, help="Hugging Face checkpoint dir, or 'default' (the shipped model's "
                       "encoder; its head is replaced)")
        t.add_argument("--out", required=True, help="run folder: model, eval.json, log.csv, loss.png, checkpoints/")
        t.add_argument("--data-dir", default=None, help="the shared data folder (default: $KOBERT_DATA_DIR, "
                       "else ../shared/data next to the repository)")
        t.add_argument("--epochs", type=positive_int, default=2)
        t.add_argument("--max-steps", type=positive_int, default=None, help="stop after N optimizer steps")
        t.add_argument("--max-length", type=positive_int, default=384 if name == "qa" else 128,
                       help="tokens per text" + (" window (question included)" if name == "qa" else ""))
        t.add_argument("--doc-stride", type=int, default=128, help="QA: overlap of a long context's windows, in tokens")
        t.add_argument("--batch-size", type=positive_int, default=32)
        t.add_argument("--lr", type=positive_float, default=5e-5)
        t.add_argument("--limit", type=int, default=None, help="use only the first N train and N eval examples")
        t.add_argument("--train-limit", type=int, default=None, help="use only the first N train examples")
        t.add_argument("--seed", type=int, default=0)
        t.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
        t.add_argument("--log-every", type=int, default=10, help="steps per log.csv row")
        t.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints (default: each epoch)")
        t.add_argument("--group-by-length", action="store_true", help=GROUP_HELP)
        t.add_argument("--quiet", action="store_true")
        t.set_defaults(func=cmd_finetune_task)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kobert", description="kobert training commands")
    add_training_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"kobert {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
