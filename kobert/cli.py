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
        result = export(args.src, args.out, targets=args.to, tokenizer=args.tokenizer, force=args.force,
                        eval_set=args.eval_set)
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
    with runtimes.load(args.dir, runtime=args.runtime, artifact=args.artifact) as runtime:
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


def cmd_bench(args) -> int:
    from kobert.bench import run_bench

    result = run_bench(quick=args.quick)
    print(result.table())
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


def cmd_eval_nsmc(args) -> int:
    from kobert.evaluate import evaluate_export, table
    from kobert.training.finetune import locate_nsmc, read_nsmc

    test = read_nsmc(locate_nsmc(args.nsmc_dir) / "ratings_test.txt", limit=args.limit)
    results = evaluate_export(args.dir, test.texts, test.labels, batch_size=args.batch_size)
    print(table(results, len(test)))
    worst = min(r.agreement for r in results)
    print(f"\nlowest agreement with torch: {100 * worst:.3f} %")
    return 0 if worst >= args.min_agreement else 1


def cmd_setup_mxnet(args) -> int:
    from kobert.mxnet_env import ENV_VAR, setup_user_venv

    python = setup_user_venv(base_python=args.python)
    print(f"MXNet interpreter ready: {python} (kobert finds it there; {ENV_VAR} overrides it)")
    return 0


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
    p.add_argument("--to", default=None, help="comma-separated targets (default: tf,onnx,tf2onnx,mxnet); tiers, "
                   "each with its own parity gate: onnx-optimized, onnx-fp16, onnx-int8, tflite, tflite-int8")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true", help="replace an existing export at --out")
    p.add_argument("--eval-set", default=None, metavar="PATH",
                   help="labelled TSV (text column document/text/sentence, label) for the int8 task gate; "
                        "without it int8 and fp32 predicted labels are compared on the golden inputs")
    p.set_defaults(func=cmd_export)

    p = commands.add_parser("parity", help="re-check an export directory; non-zero exit on failure")
    p.add_argument("dir")
    p.set_defaults(func=cmd_parity)

    p = commands.add_parser("run", help="embeddings or logits through one runtime, one JSON object per text")
    p.add_argument("dir")
    p.add_argument("--runtime", choices=["torch", "onnx", "tf", "mxnet", "tflite"], required=True)
    p.add_argument("--artifact", default=None, help="which manifest artifact the runtime opens (e.g. tf2onnx, onnx-int8)")
    p.add_argument("--output", choices=["embeddings", "logits"], default="embeddings")
    p.add_argument("--pooling", choices=["cls", "mean"], default="cls")
    p.add_argument("--input", default=None, help="a file with one text per line")
    p.add_argument("texts", nargs="*", metavar="TEXT")
    p.set_defaults(func=cmd_run)

    p = commands.add_parser("bench", help="runtime latency/throughput vs torch eager, export time, size, memory; printed tables")
    p.add_argument("--quick", action="store_true", help="tiny preset, few repeats (CI time)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the measurements as JSON")
    p.set_defaults(func=cmd_bench)

    p = commands.add_parser("eval", help="task accuracy of an export through every runtime")
    evals = p.add_subparsers(dest="eval_command", required=True)
    e = evals.add_parser("nsmc", help="NSMC test accuracy and prediction agreement per runtime")
    e.add_argument("dir", help="an export directory with a sequence-classification head")
    e.add_argument("--nsmc-dir", default=None, help="dir with ratings_test.txt (default: ../shared/data/nsmc, else download)")
    e.add_argument("--limit", type=int, default=None, help="only the first N test reviews")
    e.add_argument("--batch-size", type=int, default=128)
    e.add_argument("--min-agreement", type=float, default=0.999, help="exit 1 below this agreement with torch")
    e.set_defaults(func=cmd_eval_nsmc)

    p = commands.add_parser("setup-mxnet", help="create the per-user MXNet venv (mxnet 1.9.1, numpy<2) that the mxnet target runs in")
    p.add_argument("--python", default=None, metavar="PATH", help="base interpreter for the venv (default: this one)")
    p.set_defaults(func=cmd_setup_mxnet)

    p = commands.add_parser("demo", help="the main job: export the shipped default everywhere and compare runtimes")
    p.add_argument("--out", default="artifacts/default")
    p.set_defaults(func=cmd_demo)

    from kobert.training.cli import add_training_commands

    add_training_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse binds `run DIR TEXT...` before seeing the options, so texts after options land here.
    if extra and args.command == "run" and not any(e.startswith("-") for e in extra):
        args.texts += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except (CheckpointError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"kobert {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
