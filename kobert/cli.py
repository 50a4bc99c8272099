"""The `kobert` command: parse arguments, call one library function, print.

Every subcommand has a Python twin with the same name in the library.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kobert.canonical import CheckpointError


def cmd_tokenize(args) -> int:
    from kobert.tokenizer import get_tokenizer

    tokenizer = get_tokenizer(args.tokenizer)
    for text in args.texts:
        encoded = tokenizer(text, args.pair, truncation=True, max_length=tokenizer.model_max_length)
        print(json.dumps({
            "tokens": tokenizer.convert_ids_to_tokens(encoded["input_ids"]),
            "input_ids": encoded["input_ids"],
            "token_type_ids": encoded["token_type_ids"],
            "attention_mask": encoded["attention_mask"],
        }, ensure_ascii=False))
    return 0


def cmd_init(args) -> int:
    from kobert.checkpoint import init_checkpoint
    from kobert.config import preset

    head = args.head or ("sequence_classification" if args.num_labels else "none")
    num_labels = args.num_labels or (2 if head != "none" else 0)
    config = preset(args.preset).with_head(head, num_labels)
    out = init_checkpoint(config, args.out, seed=args.seed)
    print(f"wrote {args.preset} checkpoint ({head}, {num_labels} labels, seed {args.seed}) to {out}")
    return 0


def cmd_inspect(args) -> int:
    from kobert.checkpoint import load_checkpoint, summarize

    print(json.dumps(summarize(load_checkpoint(args.checkpoint)), indent=2, ensure_ascii=False))
    return 0


def cmd_tokenizer_train(args) -> int:
    from kobert.tokenizer_train import train_tokenizer

    out = train_tokenizer(args.corpus, args.out, vocab_size=args.vocab_size)
    print(f"wrote tokenizer ({args.vocab_size} ids) to {out}")
    return 0


def cmd_export(args) -> int:
    from kobert.export import ParityFailure, export

    try:
        result = export(resolve_default(args.src), args.out, targets=args.to, tokenizer=args.tokenizer, force=args.force)
    except ParityFailure as failure:
        print(failure.report.table())
        print(f"\nexport FAILED parity; nothing was written to {args.out}:", file=sys.stderr)
        for line in failure.report.failures:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(result.report.table())
    print(f"\nexported {', '.join(result.manifest['artifacts'])} to {result.out} (parity passed)")
    return 0


def cmd_parity(args) -> int:
    from kobert.export import reparity

    report = reparity(args.dir)
    print(report.table())
    if not report.passed:
        print("\nparity FAILED:\n  " + "\n  ".join(report.failures), file=sys.stderr)
        return 1
    return 0


def cmd_run(args) -> int:
    from kobert import runtimes

    texts = list(args.texts)
    if args.input:
        texts += [line.rstrip("\n") for line in Path(args.input).read_text(encoding="utf-8").splitlines()]
    if not texts:
        raise ValueError("no text given (pass TEXT... or --input FILE)")
    with runtimes.load(args.dir, runtime=args.runtime) as runtime:
        if args.output == "embeddings":
            values = runtime.embed(texts, pooling=args.pooling)
            key = "embedding"
        else:
            values = runtime.logits(texts)
            key = "logits"
        for i, text in enumerate(texts):
            if isinstance(values, dict):  # question answering: start and end logits
                row = {name: v[i].tolist() for name, v in values.items()}
            else:
                row = values[i].tolist()
            print(json.dumps({"text": text, key: row}, ensure_ascii=False))
    return 0


def cmd_demo(args) -> int:
    from kobert.demo import run_demo

    return run_demo(out=args.out)


def resolve_default(src: str) -> str:
    """The word `default` names the shipped default checkpoint wherever a checkpoint is expected."""
    if src == "default":
        from kobert.demo import default_checkpoint

        return str(default_checkpoint())
    return src


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kobert", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("tokenize", help="print one JSON object per text: tokens, input_ids, token_type_ids, attention_mask")
    p.add_argument("--tokenizer", default=None, help="SentencePiece .model/.spiece file or tokenizer dir (default: shipped)")
    p.add_argument("--pair", default=None, help="segment B, encoded with every TEXT")
    p.add_argument("texts", nargs="+", metavar="TEXT")
    p.set_defaults(func=cmd_tokenize)

    p = commands.add_parser("init", help="write a deterministic random-init Hugging Face checkpoint")
    p.add_argument("--preset", choices=["tiny", "small", "base"], required=True)
    p.add_argument("--num-labels", type=int, default=0, help="add a head with N labels (sequence classification unless --head)")
    p.add_argument("--head", choices=["none", "sequence_classification", "token_classification", "question_answering"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_init)

    p = commands.add_parser("inspect", help="config, parameter count, head, sha256, pad id of a checkpoint")
    p.add_argument("checkpoint")
    p.set_defaults(func=cmd_inspect)

    p = commands.add_parser("tokenizer", help="tokenizer tools")
    tok = p.add_subparsers(dest="tokenizer_command", required=True)
    t = tok.add_parser("train", help="train a KoBERT-format SentencePiece tokenizer")
    t.add_argument("corpus", nargs="+", metavar="CORPUS", help="text files (plain or .xz), one document per line")
    t.add_argument("--vocab-size", type=int, default=8002)
    t.add_argument("--out", required=True)
    t.set_defaults(func=cmd_tokenizer_train)

    p = commands.add_parser("export", help="export a checkpoint to tf, onnx, tf2onnx, mxnet and check parity")
    p.add_argument("src", metavar="SRC", help="checkpoint dir, hub id, legacy .params file, or 'default'")
    p.add_argument("--to", default=None, help="comma-separated targets (default: tf,onnx,tf2onnx,mxnet)")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true", help="replace an existing export at --out")
    p.set_defaults(func=cmd_export)

    p = commands.add_parser("parity", help="re-check an export directory; non-zero exit on failure")
    p.add_argument("dir")
    p.set_defaults(func=cmd_parity)

    p = commands.add_parser("run", help="embeddings or logits through one runtime, one JSON object per text")
    p.add_argument("dir")
    p.add_argument("--runtime", choices=["torch", "onnx", "tf", "mxnet"], required=True)
    p.add_argument("--output", choices=["embeddings", "logits"], default="embeddings")
    p.add_argument("--pooling", choices=["cls", "mean"], default="cls")
    p.add_argument("--input", default=None, help="a file with one text per line")
    p.add_argument("texts", nargs="*", metavar="TEXT")
    p.set_defaults(func=cmd_run)

    p = commands.add_parser("demo", help="the main job: export the shipped default everywhere and compare runtimes")
    p.add_argument("--out", default="artifacts/default")
    p.set_defaults(func=cmd_demo)

    from kobert.training.cli import add_training_commands

    add_training_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CheckpointError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"kobert {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
