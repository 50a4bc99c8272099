"""`kobert bulk TASK`: one Spark job from files to files (the library is kobert.spark).

    kobert bulk labels --export artifacts/default --runtime onnx --input 'reviews/*.txt' --output labels/

On a cluster, the same job through spark-submit (this file is its entry point):

    spark-submit --master spark://HOST:7077 "$(python -c 'import kobert.bulk as b; print(b.__file__)')" \\
        labels --export artifacts/default --runtime onnx --input 'hdfs:///reviews/*.parquet' ...

Nothing here imports pyspark at import time: `kobert --help` stays fast without the extra.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

TASKS = ("labels", "logits", "embeddings", "entities", "answers")
# As `kobert run --input` keeps a line (kobert.cli.line_cap): 16 characters per model position, 8x that
# for a question answering context read in windows; the rest of a longer line is past what the model reads.
LINE_CHARS_PER_TOKEN, ANSWER_WINDOWS = 16, 8


def add_bulk_arguments(parser: argparse.ArgumentParser, add_noise_options=None) -> None:
    """`bulk TASK` with its flags, one sub-parser per task."""
    tasks = parser.add_subparsers(dest="task", required=True)
    for task in TASKS:
        p = tasks.add_parser(task, help=f"{task} of every input row, written as Spark writes (part files, _SUCCESS)")
        p.add_argument("--export", required=True, metavar="DIR", help="the export folder (shipped to executors "
                       "with SparkContext.addArchive when --master is not local)")
        p.add_argument("--runtime", required=True, help="onnx, torch, tf, tflite, openvino, ... (not mxnet or auto)")
        p.add_argument("--input", required=True, metavar="GLOB", help="files to read (a path or glob Spark reads)")
        p.add_argument("--input-format", choices=["text", "jsonl", "parquet"], default="text",
                       help="text: one text per line, id '<file name>:<line>'; jsonl/parquet: --id-col and --text-col")
        p.add_argument("--output", required=True, metavar="DIR")
        p.add_argument("--format", choices=["parquet", "jsonl"], default="parquet")
        p.add_argument("--master", default=None, metavar="URL",
                       help="a cluster's master URL (default: local[*], listening on 127.0.0.1 only)")
        p.add_argument("--partitions", type=_positive, default=None, metavar="N",
                       help="repartition the rows by id into N partitions (default: as read)")
        p.add_argument("--batch-size", type=_positive, default=32, metavar="N")
        p.add_argument("--id-col", default="id")
        p.add_argument("--text-col", default="text")
        if task == "answers":
            p.add_argument("--question-col", default="question", help="the question; the context is --text-col")
        if task == "embeddings":
            p.add_argument("--pooling", choices=["mean", "cls"], default="mean")
        p.add_argument("--conf", action="append", default=[], metavar="K=V", help="a Spark setting (repeatable)")
        p.add_argument("--force", action="store_true",
                       help="replace --output if it is an earlier kobert bulk output (any other folder is kept)")
        if add_noise_options is not None:
            add_noise_options(p)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return number


def settings(pairs: list[str]) -> dict[str, str]:
    conf = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ValueError(f"--conf {pair!r}: expected KEY=VALUE")
        conf[key.strip()] = value
    return conf


def run(args) -> int:
    """The job: read, predict, write; a failed Spark job is one line naming its cause. The session is stopped
    at the end unless one was already running (then it is the caller's), and a shipped export's tar deleted."""
    from kobert import spark as ks

    # The shipped export's tar is deleted after the session stops: an executor fetches every archive its
    # session added when it starts its first task, so the tar must outlive the session's jobs.
    with contextlib.ExitStack() as shipped, ks.job_session(args.master, settings(args.conf)) as session:
        try:
            ks.prepare_output(session, args.output, args.force)
            local = args.master is None or args.master.startswith("local")
            export = args.export if local else shipped.enter_context(ks.ship(session, args.export))
            ks.write_output(predicted(session, args, export), args.output, args.format, about(args))
        except Exception as e:
            if ks.is_job_error(e):
                raise RuntimeError(ks.job_error(e)) from None
            raise
    print(f"kobert bulk {args.task}: wrote {args.output}", file=sys.stderr)
    return 0


def predicted(session, args, export: str):
    """The job's rows, lazily: the input read as --input-format says, predicted from `export` (a path or a
    shipped reference)."""
    from kobert import spark as ks

    id_col, text_col = args.id_col, args.text_col
    if args.input_format == "text":
        id_col, text_col = "id", "text"
        cap = ks.export_config(args.export).max_position_embeddings * LINE_CHARS_PER_TOKEN
        rows = ks.read_input(session, args.input, "text", cap * (ANSWER_WINDOWS if args.task == "answers" else 1))
    else:
        rows = ks.read_input(session, args.input, args.input_format)
    if args.partitions:
        rows = rows.repartition(args.partitions, id_col)
    options = {"pooling": args.pooling} if args.task == "embeddings" else {}
    if args.task == "answers":
        options["question_col"] = args.question_col
    return ks.predict(rows, export, args.task, args.runtime, text_col=text_col, id_col=id_col,
                      batch_size=args.batch_size, **options)


def about(args) -> dict:
    """What the marker file records: enough to tell what made an output folder."""
    from kobert import __version__

    return {"kobert": __version__, "task": args.task, "export": str(args.export), "runtime": args.runtime,
            "input": args.input, "input_format": args.input_format, "format": args.format}


def main(argv: list[str] | None = None) -> int:
    """`python -m kobert.bulk TASK ...` / spark-submit's entry: the same flags as `kobert bulk`; an error is one line."""
    parser = argparse.ArgumentParser(prog="kobert bulk", description=__doc__.splitlines()[0])
    add_bulk_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except Exception as e:
        print(f"kobert bulk: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
