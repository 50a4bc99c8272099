"""The `kobert` command: parse arguments, call one library function, print.

Every subcommand has a Python twin with the same name in the library.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kobert import __version__

from kobert.arguments import positive_int
from kobert.canonical import CheckpointError
from kobert.config import HEADS, PRESETS


def cmd_tokenize(args) -> int:
    from kobert.encoding import check_text
    from kobert.tokenizer import get_tokenizer

    tokenizer = get_tokenizer(args.tokenizer)
    if args.pair is not None:
        check_text(args.pair, "--pair")
    for number, text in enumerate(args.texts):
        encoded = tokenizer(check_text(text, f"TEXT {number + 1}"), args.pair, truncation=True,
                            max_length=tokenizer.model_max_length)
        print(json.dumps({
            "tokens": tokenizer.convert_ids_to_tokens(encoded["input_ids"]),
            "input_ids": encoded["input_ids"],
            "token_type_ids": encoded["token_type_ids"],
            "attention_mask": encoded["attention_mask"],
        }, ensure_ascii=False))
    return 0


def cmd_init(args) -> int:
    from kobert.checkpoint import init_checkpoint_folder
    from kobert.config import preset

    head = args.head or ("sequence_classification" if args.num_labels else "none")
    num_labels = args.num_labels or (2 if head != "none" else 0)
    config = preset(args.preset).with_head(head, num_labels)
    out = init_checkpoint_folder(config, args.out, seed=args.seed, force=args.force)
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


def cmd_import(args) -> int:
    from kobert.importing import import_model

    out = import_model(args.framework, args.model, args.out, force=args.force)
    print(f"wrote a Hugging Face checkpoint of {args.model} to {out} (export it with: kobert export {out} --to ...)")
    return 0


def cmd_export(args) -> int:
    import warnings

    from kobert.export import ExportWarning, ParityFailure, export

    # ExportWarnings are kept and printed once the export is done, one line each: a failed export's
    # error stays its one line.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExportWarning)
        try:
            result = export(args.src, args.out, targets=args.to, tokenizer=args.tokenizer, force=args.force,
                            eval_set=args.eval_set)
        except ParityFailure as failure:
            print(failure.report.table())
            print(f"\nexport FAILED parity; nothing was written to {args.out}:", file=sys.stderr)
            for line in failure.report.failures:
                print(f"  {line}", file=sys.stderr)
            return 1
    for caught_warning in caught:
        if issubclass(caught_warning.category, ExportWarning):
            warn("export", str(caught_warning.message))
        else:
            warnings.showwarning(caught_warning.message, caught_warning.category, caught_warning.filename,
                                 caught_warning.lineno)
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


# `kobert run --input` keeps a line up to a cap tied to what the model can use, so memory follows the
# model, not the input. Truncation keeps at most the tokenizer's `max_length` tokens, and a token of
# natural Korean text covers 1.7 characters on average (at most 4 over 5,000 NSMC test reviews), so
# 16 characters per token is a wide margin; `entities` report offsets into the kept text, which is
# the text their row prints. `answer` reads a context in overlapping windows, any of which may hold
# the answer, so its lines keep ANSWER_WINDOWS times as much (KorQuAD 1.0's longest dev context:
# 2,946 characters). A longer line is cut there, with a warning naming it.
LINE_CHARS_PER_TOKEN = 16
ANSWER_WINDOWS = 8
# A line with no end within this many bytes past its cap (a binary file, /dev/zero) stops the run:
# there is no next line to go on with.
LINE_SCAN_LIMIT = 64 * 2**20


def line_cap(max_length: int, output: str) -> int:
    """The characters of an input line `kobert run` keeps (see LINE_CHARS_PER_TOKEN)."""
    return max_length * LINE_CHARS_PER_TOKEN * (ANSWER_WINDOWS if output == "answer" else 1)


@dataclass
class InputLine:
    """One text for `kobert run`, or what is wrong with it."""

    where: str  # for messages: "FILE:N", or "text N" for a TEXT argument
    position: dict  # for an error row: {"line": N}, or {"argument": N}
    text: str = ""
    error: str | None = None
    fatal: bool = False  # nothing can follow it (no line end was found)


def warn(command: str, message: str) -> None:
    print(f"kobert {command}: warning: {message}", file=sys.stderr, flush=True)


def read_lines(path: str, max_chars: int | None = None) -> Iterator[InputLine]:
    """The lines of a UTF-8 file (or "-" for stdin), split on "\\n" only ("\\r\\n" accepted), read as they come.

    Not `str.splitlines`: a review may hold \\x0c, \\x1e, \\x85, U+2028 or a lone \\r, and one
    input line must stay one output line. At most `max_chars` characters of a line are kept:
    about 4 bytes each are read, the rest of the line is skipped without being held.
    """
    stream = sys.stdin.buffer if path == "-" else open(path, "rb")
    limit = None if max_chars is None else 4 * max_chars  # UTF-8: at most 4 bytes a character
    try:
        for number in itertools.count(1):
            raw = stream.readline(-1 if limit is None else limit + 1)
            if not raw:
                return
            where = f"{path}:{number}"
            cut = limit is not None and len(raw) > limit and not raw.endswith(b"\n")
            if cut and not _skip_rest_of_line(stream):
                yield InputLine(where, {"line": number}, fatal=True,
                                error=f"{where}: no line end within {LINE_SCAN_LIMIT // 2**20} MiB "
                                      "(not a text file?); stopped there")
                return
            yield _decode_line(raw, where, number, max_chars, cut)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _skip_rest_of_line(stream) -> bool:
    """Read past the end of the current line in bounded chunks; False if none came within LINE_SCAN_LIMIT."""
    skipped = 0
    while skipped <= LINE_SCAN_LIMIT:
        chunk = stream.readline(2**20)
        if not chunk or chunk.endswith(b"\n"):
            return True
        skipped += len(chunk)
    return False


def _decode_line(raw: bytes, where: str, number: int, max_chars: int | None, cut: bool) -> InputLine:
    import codecs

    if not cut:
        raw = raw.removesuffix(b"\n").removesuffix(b"\r")
    try:
        # A cut line may end inside a character: the incremental decoder leaves that one out.
        text = codecs.getincrementaldecoder("utf-8")().decode(raw, final=not cut)
    except UnicodeDecodeError as e:
        return InputLine(where, {"line": number}, error=f"{where}: not valid UTF-8 (byte {e.start + 1} of the line)")
    if max_chars is not None and (cut or len(text) > max_chars):
        text = text[:max_chars]
        warn("run", f"{where}: longer than {max_chars:,} characters; only the first {max_chars:,} are used")
    return InputLine(where, {"line": number}, text)


def text_arguments(texts: list[str]) -> Iterator[InputLine]:
    from kobert.encoding import check_text

    for number, text in enumerate(texts):
        where = f"text {number}"
        try:
            yield InputLine(where, {"argument": number}, check_text(text, where))
        except ValueError as e:
            yield InputLine(where, {"argument": number}, error=str(e))


OUTPUTS = ("embeddings", "logits", "labels", "entities", "answer")


def run_rows(runtime, texts: Iterable[str], output: str, pooling: str, batch_size: int,
             question: str | None = None) -> Iterator[dict]:
    """One JSON-ready row per text, in input order, computed in bounded batches.

    For `answer` each text is a context of `question`, or, without one, "question<TAB>context".
    """
    from kobert import tasks
    from kobert.runtimes.base import pool

    head_outputs = runtime.config.head_outputs
    if output == "logits" and not head_outputs:
        raise ValueError(f"{runtime.export_dir}: this model has no task head, so no logits (use --output embeddings)")
    if output == "labels":
        for text, label in tasks.iter_labels(runtime, texts, batch_size=batch_size):
            yield {"text": text, **label}
        return
    if output == "entities":
        for text, entities in tasks.iter_entities(runtime, texts, batch_size=batch_size):
            yield {"text": text, "entities": entities}
        return
    if output == "answer":
        for (q, context), answer in tasks.iter_answers(runtime, question_rows(texts, question), batch_size=batch_size):
            yield {"text": context, "question": q, **answer}
        return
    for text, outputs, mask in runtime.stream(texts, batch_size=batch_size):
        if output == "embeddings":
            yield {"text": text, "embedding": pool(outputs["last_hidden_state"], mask, pooling).tolist()}
        elif len(head_outputs) == 1:
            yield {"text": text, "logits": outputs[head_outputs[0]].tolist()}
        else:  # question answering: start and end logits
            yield {"text": text, "logits": {name: outputs[name].tolist() for name in head_outputs}}


def question_rows(texts: Iterable[str], question: str | None) -> Iterator[tuple[str, str]]:
    """(question, context) per text: `question` with each text, or each text split at its first TAB."""
    for number, text in enumerate(texts):
        if question is not None:
            yield question, text
            continue
        q, tab, context = text.partition("\t")
        if not tab:
            raise ValueError(f"text {number}: expected 'question<TAB>context' (or pass --question Q)")
        yield q, context


# JSON leaves these unescaped, but `str.splitlines` (and many line readers) break lines on them.
_LINE_BREAKERS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_line(row: dict) -> str:
    """One JSON object on exactly one line, whatever the text holds."""
    return json.dumps(row, ensure_ascii=False).translate(_LINE_BREAKERS) + "\n"


def cmd_run(args) -> int:
    from kobert import runtimes
    from kobert.progress import Counter

    counter = Counter("run --input") if args.input else None
    with runtimes.load(args.dir, runtime=args.runtime, artifact=args.artifact, verify=not args.no_verify,
                       threads=args.threads) as runtime:
        # The export's own faults (no tokenizer, a tampered one) are one error, before any line is read.
        max_length = runtime.text_encoder.max_length
        lines = text_arguments(args.texts)
        if args.input:
            cap = line_cap(max_length, args.output)
            lines = itertools.chain(lines, read_lines(args.input, cap))
        written, skipped = RowWriter(runtime, args, sys.stdout, counter).write(lines)
    if counter is not None:
        counter.done()
    if skipped:
        warn("run", f"{skipped:,} line(s) gave an error row instead of output (--on-error skip)")
    if not written + skipped:
        raise ValueError("no text given (pass TEXT... or --input FILE)")
    return 0


class RowWriter:
    """`kobert run`'s rows in input order, flushed after every window, so a bad line loses nothing before it.

    A window is computed whole; if that fails, its lines are computed one at a time, so every good line
    before the failing one is written. A bad line (an input error, ValueError) stops the run
    (`--on-error stop`) or becomes an `{"error": ..., "line": N}` row (`--on-error skip`); any other
    failure stops the run.
    """

    def __init__(self, runtime, args, out, counter=None):
        self.runtime, self.args, self.out, self.counter = runtime, args, out, counter
        self.written = self.skipped = 0

    def write(self, lines: Iterable[InputLine]) -> tuple[int, int]:
        from kobert.encoding import WINDOW_BATCHES, windows

        needs_tab = self.args.output == "answer" and self.args.question is None
        for window in windows(lines, self.args.batch_size * WINDOW_BATCHES):
            good = []
            for line in window:
                if line.error is None and needs_tab and "\t" not in line.text:
                    line.error = f"{line.where}: expected 'question<TAB>context' (or pass --question Q)"
                if line.error is None:
                    good.append(line)
                    continue
                self._rows(good)
                good = []
                self._bad(line)
            self._rows(good)
            self.out.flush()
        return self.written, self.skipped

    def _compute(self, lines: list[InputLine]) -> list[dict]:
        a = self.args
        return list(run_rows(self.runtime, [line.text for line in lines], a.output, a.pooling, a.batch_size,
                             question=a.question))

    def _rows(self, lines: list[InputLine]) -> None:
        if not lines:
            return
        try:
            rows = self._compute(lines)
        except Exception:
            rows = None  # found below, line by line
        if rows is None:
            for line in lines:
                try:
                    self._emit(self._compute([line]))
                except ValueError as e:
                    self._bad(InputLine(line.where, line.position, error=f"{line.where}: {e}"))
                except Exception:
                    self.out.flush()
                    raise
            return
        self._emit(rows)

    def _emit(self, rows: list[dict]) -> None:
        for row in rows:
            self.out.write(json_line(row))
            self.written += 1
            if self.counter is not None:
                self.counter.add()

    def _bad(self, line: InputLine) -> None:
        if self.args.on_error != "skip" or line.fatal:
            self.out.flush()
            raise ValueError(line.error)
        self.out.write(json_line({"error": line.error, **line.position}))
        self.skipped += 1


def cmd_package(args) -> int:
    from kobert import registry

    spec = registry.PACKAGES[args.package]
    options = {flag.lstrip("-").replace("-", "_"): getattr(args, flag.lstrip("-").replace("-", "_"))
               for flag, *_ in spec.options}
    out = spec.load_builder()(Path(args.dir), Path(args.out), **options)
    print(f"wrote {spec.name} package to {out}")
    companion = spec.companion_of(out)
    if companion is not None:
        print(f"wrote its server configuration to {companion}")
    return 0


def cmd_demo(args) -> int:
    from kobert.demo import run_demo

    return run_demo(out=args.out)


def cmd_bench(args) -> int:
    from kobert.bench import run_bench

    from kobert.progress import say

    result = run_bench(quick=args.quick, rounds=args.rounds, calls=args.calls, progress=say, targets=args.targets,
                       shipped_default=not args.skip_default)
    print(result.table())
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


def check_export_head(export_dir: str, task: str) -> None:
    """An export of another task's model is one clear error, before any data is read or runtime loaded."""
    from kobert.config import KoBertConfig
    from kobert.evaluate import check_head
    from kobert.runtimes.base import read_manifest

    config = KoBertConfig.from_hf_dict(read_manifest(export_dir).get("config"), source=f"{export_dir}/manifest.json")
    try:
        check_head(task, config)
        if task == "nsmc" and config.num_labels != 2:
            raise ValueError(f"nsmc needs 2 labels; this model has {config.num_labels}")
    except ValueError as e:
        raise ValueError(f"{export_dir}: {e} (an export of another task's model?)") from None


def cmd_eval_nsmc(args) -> int:
    from kobert.datasets import locate_nsmc, read_nsmc
    from kobert.evaluate import evaluate_export, selected_runs, table

    check_export_head(args.dir, "nsmc")
    test = read_nsmc(locate_nsmc(args.nsmc_dir) / "ratings_test.txt", limit=args.limit)
    results = evaluate_export(args.dir, test.texts, test.labels, batch_size=args.batch_size,
                              which=selected_runs(args.dir, args.runtime, args.artifact))
    print(table(results, len(test)))
    _write_results(args, "nsmc", results, len(test))
    return _agreement_verdict(results, args.min_agreement)


def cmd_eval_task(args) -> int:
    from kobert.datasets import read_task
    from kobert.evaluate import evaluate_task, selected_runs, task_table

    check_export_head(args.dir, args.eval_command)
    data = read_task(args.eval_command, "eval", args.data_dir, args.limit)
    results = evaluate_task(args.dir, args.eval_command, data, batch_size=args.batch_size,
                            which=selected_runs(args.dir, args.runtime, args.artifact))
    print(task_table(args.eval_command, results, len(data)))
    _write_results(args, args.eval_command, results, len(data))
    verdict = _agreement_verdict(results, args.min_agreement)
    if args.eval_command == "qa":
        print("note: KorQuAD 1.0 dev split by article (seed 0); trained on 80 % of its articles, scored on the "
              "rest: not comparable to published dev scores")
    return verdict


def _write_results(args, task: str, results, examples: int) -> None:
    """--json FILE: the figures as a record (date, command, CPU) that benchmarks/figures.py renders."""
    from kobert.evaluate import results_record

    if args.json:
        record = results_record(task, results, examples, "kobert " + " ".join(sys.argv[1:]))
        Path(args.json).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


def _agreement_verdict(results, min_agreement: float | None) -> int:
    """Exit 1 when a runtime agrees with torch less than its tier's gate allows (or `--min-agreement`)."""
    from kobert.evaluate import below_floor

    worst = min(r.agreement for r in results)
    print(f"\nlowest agreement with torch: {100 * worst:.3f} %")
    failed = below_floor(results, min_agreement)
    for line in failed:
        print(f"  {line}", file=sys.stderr)
    return 1 if failed else 0


def cmd_setup_mxnet(args) -> int:
    from kobert.mxnet_env import ENV_VAR, setup_user_venv

    python = setup_user_venv(base_python=args.python)
    print(f"MXNet interpreter ready: {python} (kobert finds it there; {ENV_VAR} overrides it)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `kobert` parser: one small function per command (`COMMANDS`), then the training commands."""
    parser = argparse.ArgumentParser(prog="kobert", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"kobert {__version__}")
    add_noise_options(parser, argparse_default=False)
    commands = parser.add_subparsers(dest="command", required=True)
    for add_command in COMMANDS:
        add_command(commands)
    from kobert.training.cli import add_training_commands

    add_training_commands(commands)
    return parser


def _add_tokenize(commands) -> None:
    p = commands.add_parser("tokenize", help="print one JSON object per text: tokens, input_ids, token_type_ids, attention_mask")
    p.add_argument("--tokenizer", default=None, help="SentencePiece .model/.spiece file or tokenizer dir (default: shipped)")
    p.add_argument("--pair", default=None, help="segment B, encoded with every TEXT")
    p.add_argument("texts", nargs="+", metavar="TEXT")
    p.set_defaults(func=cmd_tokenize)


def _add_init(commands) -> None:
    p = commands.add_parser("init", help="write a deterministic random-init Hugging Face checkpoint")
    p.add_argument("--preset", choices=list(PRESETS), required=True)
    p.add_argument("--num-labels", type=int, default=0, help="add a head with N labels (sequence classification unless --head)")
    p.add_argument("--head", choices=list(HEADS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true",
                   help="replace an earlier `kobert init` output at --out; any other non-empty folder is refused")
    p.set_defaults(func=cmd_init)


def _add_import(commands) -> None:
    from kobert.importing import IMPORTERS

    p = commands.add_parser("import", help="a model trained in another framework back to a Hugging Face checkpoint")
    p.add_argument("framework", choices=list(IMPORTERS))
    p.add_argument("model", metavar="MODEL", help="keras: the .keras file (or the export's keras/ folder)")
    p.add_argument("--out", required=True, help="the checkpoint folder to write (config, safetensors, tokenizer)")
    p.add_argument("--force", action="store_true", help="replace an earlier `kobert import` output at --out")
    p.set_defaults(func=cmd_import)


def _add_inspect(commands) -> None:
    p = commands.add_parser("inspect", help="config, parameter count, head, sha256, pad id of a checkpoint")
    p.add_argument("checkpoint")
    p.set_defaults(func=cmd_inspect)


def _add_tokenizer(commands) -> None:
    p = commands.add_parser("tokenizer", help="tokenizer tools")
    tok = p.add_subparsers(dest="tokenizer_command", required=True)
    t = tok.add_parser("train", help="train a KoBERT-format SentencePiece tokenizer")
    t.add_argument("corpus", nargs="+", metavar="CORPUS", help="text files (plain or .xz), one document per line")
    t.add_argument("--vocab-size", type=int, default=8002)
    t.add_argument("--out", required=True)
    t.set_defaults(func=cmd_tokenizer_train)


def _add_export(commands) -> None:
    from kobert import registry

    p = commands.add_parser("export", help="export a checkpoint to tf, onnx, tf2onnx, mxnet and check parity")
    p.add_argument("src", metavar="SRC", help="checkpoint dir, hub id, legacy .params file, or 'default'")
    targets = "; ".join(f"{t.name}: {t.summary}" for t in registry.TARGETS.values())
    p.add_argument("--to", default=None, help=f"comma-separated targets (default: {','.join(registry.default_targets())}). "
                   f"Each is judged by its own parity gate. {targets}")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true",
                   help="replace an earlier kobert export (or an empty folder) at --out; anything else is refused")
    p.add_argument("--eval-set", default=None, metavar="SET",
                   help="data for the int8 task gate: nsmc|ynat|ner|sts|qa (that task's eval split in the shared "
                        "data, gated on its metric), TASK:PATH (a file in that task's format), or a labelled TSV "
                        "(text column document/text/sentence, label: accuracy); without it int8 and fp32 predicted "
                        "labels of a sequence classifier are compared on the golden inputs")
    add_noise_options(p)
    p.set_defaults(func=cmd_export)


def _add_parity(commands) -> None:
    p = commands.add_parser("parity", help="re-check an export directory (sha256 of every file, then parity); exit 1 on failure")
    p.add_argument("dir")
    add_noise_options(p)
    p.set_defaults(func=cmd_parity)


def _add_run(commands) -> None:
    from kobert import registry

    p = commands.add_parser("run", help="embeddings or logits through one runtime, one JSON object per text")
    p.add_argument("dir")
    p.add_argument("--runtime", choices=[*registry.RUNTIMES, "auto"], required=True,
                   help="the framework to run in; auto: the export's fastest artifact that passed its gate on "
                        "this CPU (a short probe, cached; says which on stderr)")
    p.add_argument("--artifact", default=None, choices=[registry.REFERENCE, *registry.TARGETS],
                   help="which manifest artifact the runtime opens (e.g. tf2onnx, onnx-int8)")
    p.add_argument("--output", choices=list(OUTPUTS), default="embeddings",
                   help="embeddings; raw logits; labels (sequence classification); entities (token "
                        "classification); answer (question answering: --question, or TEXT = question<TAB>context)")
    p.add_argument("--question", default=None, help="with --output answer: the question every TEXT is a context of")
    p.add_argument("--pooling", choices=["cls", "mean"], default="mean",
                   help="with --output embeddings: the mean over valid tokens (default, as rt.embed) or [CLS]")
    p.add_argument("--input", default=None, metavar="FILE",
                   help="a UTF-8 file with one text per line ('-' for stdin), streamed: one output line per input "
                        f"line. A line keeps at most {LINE_CHARS_PER_TOKEN} characters per token the model takes "
                        f"({ANSWER_WINDOWS}x that for answer), enough for all that truncation keeps: a longer line "
                        "is cut there, with a warning naming it")
    p.add_argument("--on-error", choices=["stop", "skip"], default="stop",
                   help="a bad line: stop (exit 2, every row before it written), or skip (an "
                        '{"error": ..., "line": N} row in its place, and go on)')
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--threads", type=positive_int, default=None,
                   help="intra-op threads for the framework (default: its own); process-wide for torch and TensorFlow")
    p.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the artifact's files")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts; put them after -- if one starts with '-'")
    add_noise_options(p)
    p.set_defaults(func=cmd_run)


def _add_bulk(commands) -> None:
    from kobert.bulk import add_bulk_arguments

    p = commands.add_parser("bulk", help="labels, logits, embeddings, entities or answers of files on Apache Spark "
                                         "(local by default; pip install kobert[spark])")
    add_bulk_arguments(p, add_noise_options)
    p.set_defaults(func=cmd_bulk)


def cmd_bulk(args) -> int:
    from kobert.bulk import run

    return run(args)


def _add_package(commands) -> None:
    from kobert import registry

    p = commands.add_parser("package", help="deployable packages built from an export (serving archives, web pages)")
    packages = p.add_subparsers(dest="package", required=True)
    for spec in registry.PACKAGES.values():
        q = packages.add_parser(spec.name, help=spec.summary)
        q.add_argument("dir", help=f"an export directory with the {spec.needs!r} artifact")
        q.add_argument("--out", required=True)
        for flag, kind, default, text in spec.options:
            q.add_argument(flag, type=kind, default=default, help=text)
        add_noise_options(q)
        q.set_defaults(func=cmd_package)


def _add_bench(commands) -> None:
    p = commands.add_parser("bench", help="every runtime in its own process vs torch eager and the GEMM ceiling; printed tables")
    p.add_argument("--quick", action="store_true", help="tiny preset, few repeats (CI time)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the measurements as JSON")
    p.add_argument("--rounds", type=positive_int, default=None,
                   help="rounds, each starting every row's worker process again (default 3, --quick 2)")
    p.add_argument("--calls", type=positive_int, default=None, help="timed calls per shape in each round (default 3)")
    p.add_argument("--targets", default=None, type=bench_targets, metavar="LIST",
                   help="comma-separated artifacts to time (default: every target with a bench row); torch eager "
                        "and the GEMM rows always run")
    p.add_argument("--skip-default", action="store_true", help="KoBERT-base only, not the shipped default too")
    add_noise_options(p)
    p.set_defaults(func=cmd_bench)


def bench_targets(text: str) -> list[str]:
    """--targets: registry targets that have a bench row, else one line naming the rest."""
    from kobert.bench.rows import runtime_rows

    known = [artifact for _, artifact in runtime_rows().values()]
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in names if t not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"no bench row for {', '.join(unknown) or 'nothing'}; "
                                         f"known: {', '.join(known)}")
    return names


JSON_HELP = "also write the figures, with date, command and CPU, to FILE (e.g. benchmarks/results/...json)"


def _add_eval(commands) -> None:
    p = commands.add_parser("eval", help="task accuracy of an export through every runtime")
    evals = p.add_subparsers(dest="eval_command", required=True)
    e = evals.add_parser("nsmc", help="NSMC test accuracy and prediction agreement per runtime")
    e.add_argument("dir", help="an export directory with a sequence-classification head")
    e.add_argument("--nsmc-dir", default=None, help="dir with ratings_test.txt (default: ../shared/data/nsmc, else download)")
    e.add_argument("--limit", type=int, default=None, help="only the first N test reviews")
    e.add_argument("--batch-size", type=positive_int, default=128)
    e.add_argument("--json", default=None, metavar="FILE", help=JSON_HELP)
    add_noise_options(e)
    e.add_argument("--min-agreement", type=float, default=None,
                   help="exit 1 below this agreement with torch (default: each tier's gate, 0.999 exact, 0.997 lossy)")
    _add_eval_selection(e)
    e.set_defaults(func=cmd_eval_nsmc)
    for task, what in (("ynat", "KLUE YNAT dev macro-F1"), ("ner", "KMOU 2016klp test strict entity F1"),
                       ("sts", "KorSTS test Spearman (cross-encoder, and bi-encoder cosine)"),
                       ("qa", "KorQuAD 1.0 held-out articles EM/F1")):
        e = evals.add_parser(task, help=f"{what} and prediction agreement per runtime")
        e.add_argument("dir", help="an export directory of a model fine-tuned with `kobert finetune " + task + "`")
        e.add_argument("--data-dir", default=None, help="the shared data folder (default: $KOBERT_DATA_DIR, "
                       "else ../shared/data next to the repository)")
        e.add_argument("--limit", type=int, default=None, help="only the first N eval examples")
        e.add_argument("--batch-size", type=positive_int, default=64)
        e.add_argument("--json", default=None, metavar="FILE", help=JSON_HELP)
        add_noise_options(e)
        e.add_argument("--min-agreement", type=float, default=None,
                       help="exit 1 below this agreement with torch (default: each tier's gate, 0.999 exact, 0.997 lossy)")
        _add_eval_selection(e)
        e.set_defaults(func=cmd_eval_task)


def _add_eval_selection(e) -> None:
    from kobert import registry

    e.add_argument("--runtime", default=None, choices=[*registry.RUNTIMES, "auto"],
                   help="only this runtime (and torch, which agreement is measured against); auto: the export's "
                        "fastest artifact that passed its gate on this CPU, said on stderr")
    e.add_argument("--artifact", default=None, choices=[registry.REFERENCE, *registry.TARGETS],
                   help="only this manifest artifact (and torch)")


def _add_setup_mxnet(commands) -> None:
    from kobert.mxnet_env import MXNET_REQUIREMENTS

    p = commands.add_parser("setup-mxnet", help=f"create the per-user MXNet venv ({', '.join(MXNET_REQUIREMENTS)}) "
                                                "that the mxnet target runs in")
    p.add_argument("--python", default=None, metavar="PATH", help="base interpreter for the venv (default: this one)")
    p.set_defaults(func=cmd_setup_mxnet)


def _add_demo(commands) -> None:
    p = commands.add_parser("demo", help="the main job: export the shipped default everywhere and compare runtimes")
    p.add_argument("--out", default="artifacts/default")
    p.set_defaults(func=cmd_demo)


# `kobert --help` lists the commands in this order; the training commands follow.
COMMANDS = (_add_tokenize, _add_init, _add_import, _add_inspect, _add_tokenizer, _add_export, _add_parity, _add_run, _add_bulk, _add_package,
            _add_bench, _add_eval, _add_setup_mxnet, _add_demo)


def add_noise_options(parser: argparse.ArgumentParser, argparse_default=argparse.SUPPRESS) -> None:
    """--quiet / --verbose, accepted before or after the subcommand."""
    parser.add_argument("--quiet", action="store_true", default=argparse_default, help="no progress lines on stderr")
    parser.add_argument("--verbose", action="store_true", default=argparse_default,
                        help="keep TensorFlow's and absl's start-up logging, and print an error's full cause")


def main(argv: list[str] | None = None) -> int:
    from kobert.progress import quiet_frameworks, set_quiet

    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" is text, even when it starts with "-" (the emoticon "-_-").
    trailing = []
    if "--" in argv:
        cut = argv.index("--")
        argv, trailing = argv[:cut], argv[cut + 1:]
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse binds `run DIR TEXT...` before seeing the options, so texts after options land here.
    texts_command = hasattr(args, "texts")
    if extra and texts_command and not any(e.startswith("-") for e in extra):
        args.texts += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if trailing:
        if not texts_command:
            parser.error(f"unrecognized arguments: -- {' '.join(trailing)}")
        args.texts += trailing
    set_quiet(bool(getattr(args, "quiet", False)))
    if not getattr(args, "verbose", False):
        quiet_frameworks()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"kobert {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        return report_error(args.command, argv + trailing, e, verbose=bool(getattr(args, "verbose", False)))


# Errors kobert raises on purpose, each with a message for the user; anything else is named by its type.
USER_ERRORS = (CheckpointError, ValueError, FileNotFoundError, RuntimeError, OSError, ImportError)


def report_error(command: str, argv: list[str], error: Exception, verbose: bool) -> int:
    """One line on stderr; the full cause in a log file it names (kobert.errors), on stderr too with --verbose."""
    from kobert import errors

    line, more = errors.summary(error, USER_ERRORS)
    if verbose:
        traceback.print_exception(error, file=sys.stderr)
    if more:
        try:
            line += f" (details: {errors.write_log(command, argv, error)})"
        except OSError:  # a full or read-only disk must not hide the error itself
            pass
    print(f"kobert {command}: error: {line}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
