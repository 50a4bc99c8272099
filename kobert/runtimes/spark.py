"""Bulk inference on Apache Spark with an exported artifact: the spoke that imports pyspark (public as `kobert.spark`).

    from kobert import spark
    session = spark.session()                      # local[*], loopback only
    df = session.read.parquet("reviews.parquet")   # an id column and a text column
    spark.labels(df, "artifacts/default", runtime="onnx").write.parquet("labels")

Built on `DataFrame.rdd.mapPartitions`, not `pyspark.ml.functions.predict_batch_udf` or `mapInPandas`:
both of those are pandas UDFs, so every executor would need pandas and pyarrow too, and
predict_batch_udf's results are scalars, 1-D/2-D arrays or flat structs, so it cannot return `entities`
(an array of structs); it also hands the model fixed slices in input order, while
`Runtime.stream_encoded` (what `kobert run` uses) sorts each window by length so a batch pads little.
Rows cross to Python pickled instead of as Arrow, microseconds next to a millisecond of BERT per text.
The per-worker model cache is predict_batch_udf's own idea, kept: every call (`labels(...)`, ...)
gets a uuid on the driver, and each Python worker loads that call's model once (`_RUNTIMES`, at most
three kept, as pyspark's ModelCache), with `threads=spark.task.cpus` and the export's sha256 checked
before its first batch. (RDDs are not in Spark Connect: use a classic session.)

A row whose text the model refuses (a null text, invalid UTF-8 in a text file, invalid Unicode) gets
its message in the `error` column and nulls for its results; any other failure fails the task (Spark
retries it) and then the job.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from pyspark import SparkContext, SparkFiles
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

TASKS = ("labels", "logits", "embeddings", "entities", "answers")
# Nothing listens beyond loopback (the UI would bind 0.0.0.0); SPARK_LOCAL_IP is set beside these.
LOOPBACK_CONF = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                 "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false"}
SHIPPED = "sparkfiles:"  # an export reference executors resolve with SparkFiles.get (see `ship`)
ERROR_COL = "error"
ENTITY = T.StructType([T.StructField("entity_group", T.StringType()), T.StructField("score", T.DoubleType()),
                       T.StructField("word", T.StringType()), T.StructField("start", T.IntegerType()),
                       T.StructField("end", T.IntegerType())])
FLOATS = T.ArrayType(T.FloatType())
CACHED_MODELS = 3  # as pyspark.ml.model_cache.ModelCache: a worker serving several calls keeps three


def session(master: str | None = None, conf: dict[str, str] | None = None, app_name: str = "kobert bulk") -> SparkSession:
    """A Spark session: `local[*]` on loopback only by default, else `master` (a cluster's URL).

    Python workers run this interpreter unless `conf`'s spark.pyspark.python or $PYSPARK_PYTHON names another."""
    builder = SparkSession.builder.appName(app_name).master(master or "local[*]")
    if master is None or master.startswith("local"):
        os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
        for key, value in LOOPBACK_CONF.items():
            builder = builder.config(key, value)
    # pyspark hands its workers' interpreter from PYSPARK_PYTHON (spark.pyspark.python is read by spark-submit).
    os.environ["PYSPARK_PYTHON"] = (conf or {}).get("spark.pyspark.python") or os.environ.get("PYSPARK_PYTHON") \
        or sys.executable
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


@contextlib.contextmanager
def ship(spark: SparkSession, export_dir: str | Path) -> Iterator[str]:
    """Send an export folder to every executor (`SparkContext.addArchive`, a tar of it); the block gets a
    reference ("sparkfiles:NAME") that opens the executor's own unpacked copy, sha256-checked there.

    The tar is deleted when the block ends, failed or not. Executors fetch it from the driver at their first
    task, and every archive the session added, not only the ones a job uses: on a cluster that may start
    executors later, keep the block open while the session runs jobs, or stop the session inside it (as
    `kobert bulk` does)."""
    export_dir = Path(export_dir)
    if not (export_dir / "manifest.json").is_file():
        raise FileNotFoundError(f"{export_dir}: no manifest.json (not a kobert export directory)")
    name = f"kobert-export-{uuid.uuid4().hex[:12]}.tar"
    folder = Path(tempfile.mkdtemp(prefix="kobert-ship-"))
    try:
        with tarfile.open(folder / name, "w") as tar:
            # Members named by the folder's children, never ".": Hadoop's untar refuses a "./" entry
            # ("expanding ./ would create entry outside of ...").
            for child in sorted(export_dir.iterdir()):
                tar.add(child, arcname=child.name)
        spark.sparkContext.addArchive(str(folder / name))
        yield SHIPPED + name
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def job_session(master: str | None = None, conf: dict[str, str] | None = None) -> Iterator[SparkSession]:
    """`session(master, conf)` for one job, stopped when the block ends, unless a session was already
    running here (a notebook's, a test's): that one is used as it is and left running."""
    # getOrCreate reuses the process's SparkContext; SparkSession.getActiveSession() is per JVM thread and
    # can say None while one runs (it did under pytest: kobert bulk stopped the test's session).
    running = SparkContext._active_spark_context is not None
    spark = session(master, conf)
    try:
        yield spark
    finally:
        if not running:
            spark.stop()


def local_export(export: str) -> str:
    """The folder an export reference names here: a path, or a shipped archive's unpacked copy."""
    return SparkFiles.get(export[len(SHIPPED):]) if str(export).startswith(SHIPPED) else str(export)


# --- the five tasks --------------------------------------------------------------------------------


def labels(df: DataFrame, export, runtime: str = "onnx", **options) -> DataFrame:
    """id, `label` (string; null for a regression head), `score` (double), `error`."""
    return predict(df, export, "labels", runtime, **options)


def logits(df: DataFrame, export, runtime: str = "onnx", **options) -> DataFrame:
    """id, `logits` (array<float>; array<array<float>> per token for a token head), `error`; a question
    answering head gives `start_logits` and `end_logits` instead."""
    return predict(df, export, "logits", runtime, **options)


def embeddings(df: DataFrame, export, runtime: str = "onnx", pooling: str = "mean", **options) -> DataFrame:
    """id, `embedding` (array<float>: the mean over valid tokens, or [CLS] with pooling="cls"), `error`."""
    return predict(df, export, "embeddings", runtime, pooling=pooling, **options)


def entities(df: DataFrame, export, runtime: str = "onnx", **options) -> DataFrame:
    """id, `entities` (array of struct<entity_group, score, word, start, end>, as `Runtime.entities`), `error`."""
    return predict(df, export, "entities", runtime, **options)


def answers(df: DataFrame, export, runtime: str = "onnx", question_col: str = "question", **options) -> DataFrame:
    """id, `answer`, `score`, `start`, `end` (as `Runtime.answer`; the context is the text column), `error`."""
    return predict(df, export, "answers", runtime, question_col=question_col, **options)


def predict(df: DataFrame, export, task: str, runtime: str = "onnx", text_col: str = "text", id_col: str = "id",
            batch_size: int = 32, pooling: str = "mean", question_col: str | None = None,
            artifact: str | None = None, load: Callable | None = None) -> DataFrame:
    """The five tasks' one path. `load` replaces `kobert.runtimes.load` (same arguments) on executors."""
    if task not in TASKS:
        raise ValueError(f"task {task!r}: expected one of {', '.join(TASKS)}")
    if runtime in ("mxnet", "auto"):
        raise ValueError(f"runtime {runtime!r} does not run on Spark executors "
                         + ("(MXNet needs its own interpreter, `kobert setup-mxnet`)" if runtime == "mxnet"
                            else "(each executor could pick another artifact): name one, e.g. onnx"))
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    inputs = [id_col, text_col] + ([question_col] if task == "answers" else [])
    missing = [c for c in inputs if c not in df.columns]
    if missing:
        raise ValueError(f"input has no column {missing[0]!r} (it has {', '.join(df.columns) or 'none'})")
    carried = [ERROR_COL] if ERROR_COL in df.columns else []
    config = export_config(export)
    schema = T.StructType([df.schema[id_col], *result_fields(task, config), T.StructField(ERROR_COL, T.StringType())])
    job = BulkJob(str(export), task, runtime, artifact, task_cpus(df.sparkSession), batch_size, pooling,
                  bool(carried), load, id_col, schema.fieldNames())
    return df.sparkSession.createDataFrame(df.select(*inputs, *carried).rdd.mapPartitions(job), schema)


def task_cpus(spark: SparkSession) -> int:
    return int(spark.conf.get("spark.task.cpus", "1"))


def export_config(export):
    """The model config of an export reference, read from its manifest where this process sees it."""
    from kobert.config import KoBertConfig
    from kobert.runtimes.base import read_manifest

    folder = local_export(export)
    return KoBertConfig.from_hf_dict(read_manifest(folder).get("config"), source=f"{folder}/manifest.json")


def result_fields(task: str, config) -> list[T.StructField]:
    """The typed result columns of a task (logits' shape follows the model's head)."""
    if task == "labels":
        return [T.StructField("label", T.StringType()), T.StructField("score", T.DoubleType())]
    if task == "embeddings":
        return [T.StructField("embedding", FLOATS)]
    if task == "entities":
        return [T.StructField("entities", T.ArrayType(ENTITY))]
    if task == "answers":
        return [T.StructField("answer", T.StringType()), T.StructField("score", T.DoubleType()),
                T.StructField("start", T.IntegerType()), T.StructField("end", T.IntegerType())]
    names = config.head_outputs
    if not names:
        raise ValueError("this model has no task head, so no logits (use embeddings)")
    per_token = config.head_spec.per_token
    if len(names) == 1:
        return [T.StructField("logits", T.ArrayType(FLOATS) if per_token else FLOATS)]
    return [T.StructField(name, FLOATS) for name in names]


# --- what runs in each Python worker -------------------------------------------------------------------

_RUNTIMES: OrderedDict = OrderedDict()
_RUNTIMES_LOCK = threading.Lock()


class BulkJob:
    """`mapPartitions`' function: rows of (id, text[, question][, error]) in, result tuples out.

    Rows are read in windows of `batch_size * WINDOW_BATCHES`, as `kobert run --input`
    reads lines; a window that fails is computed row by row, so a refused row gets an error and the
    others their results."""

    def __init__(self, export: str, task: str, runtime: str, artifact, threads: int, batch_size: int,
                 pooling: str, carries_error: bool, load: Callable | None, id_col: str, fields: list[str]):
        self.id_col, self.fields = id_col, fields
        self.export, self.task, self.runtime, self.artifact = export, task, runtime, artifact
        self.threads, self.batch_size, self.pooling = threads, batch_size, pooling
        self.carries_error, self.load = carries_error, load
        self.key = uuid.uuid4().hex  # one model per call and worker, as predict_batch_udf's uuid

    def __call__(self, rows):
        from kobert.encoding import WINDOW_BATCHES, windows

        model = self.model()
        for window in windows((tuple(row) for row in rows), self.batch_size * WINDOW_BATCHES):
            for result in self.results(model, window):
                yield tuple(_plain(result.get(name)) for name in self.fields)

    def model(self):
        """This call's runtime in this worker: loaded (and sha256-checked) at the first batch, then kept."""
        with _RUNTIMES_LOCK:
            if self.key not in _RUNTIMES:
                from kobert import runtimes

                load = self.load or runtimes.load
                _RUNTIMES[self.key] = load(local_export(self.export), runtime=self.runtime, artifact=self.artifact,
                                           threads=self.threads)
                while len(_RUNTIMES) > CACHED_MODELS:
                    _RUNTIMES.popitem(last=False)[1].close()
            _RUNTIMES.move_to_end(self.key)
            return _RUNTIMES[self.key]

    def results(self, model, window: list[tuple]) -> list[dict]:
        refused = [self.refusal(row) for row in window]
        good = [row for row, reason in zip(window, refused) if reason is None]
        try:
            computed = iter(self.compute(model, good))
        except ValueError:
            computed = iter(self.one_by_one(model, good))
        return [{self.id_col: row[0], ERROR_COL: reason} if reason else next(computed) for row, reason in zip(window, refused)]

    def refusal(self, row: tuple) -> str | None:
        from kobert.encoding import check_text

        if self.carries_error and row[-1] is not None:
            return row[-1]
        texts = row[1:3] if self.task == "answers" else row[1:2]
        try:
            for text, what in zip(texts, ("text", "question")):
                if text is None:
                    raise ValueError(f"{row[0]}: no {what} (null)")
                check_text(text, str(row[0]))
        except ValueError as e:
            return str(e)
        return None

    def one_by_one(self, model, rows: list[tuple]) -> Iterator[dict]:
        for row in rows:
            try:
                yield from self.compute(model, [row])
            except ValueError as e:
                yield {self.id_col: row[0], ERROR_COL: f"{row[0]}: {e}"}

    def compute(self, model, rows: list[tuple]) -> list[dict]:
        """Each row's results, as `kobert run` computes them (the same tasks functions, the same batching)."""
        from kobert import tasks
        from kobert.runtimes.base import pool

        ids, texts = [r[0] for r in rows], [r[1] for r in rows]
        size = self.batch_size
        if self.task == "labels":
            found = [{"label": label.get("label"), "score": label["score"]}
                     for _, label in tasks.iter_labels(model, texts, batch_size=size)]
        elif self.task == "entities":
            found = [{"entities": e} for _, e in tasks.iter_entities(model, texts, batch_size=size)]
        elif self.task == "answers":
            pairs = [(r[2], r[1]) for r in rows]
            found = [dict(answer) for _, answer in tasks.iter_answers(model, pairs, batch_size=size)]
        elif self.task == "embeddings":
            found = [{"embedding": pool(out["last_hidden_state"], mask, self.pooling)}
                     for _, out, mask in model.stream(texts, batch_size=size)]
        else:
            found = self.logits(model, texts)
        return [{self.id_col: i, **values, ERROR_COL: None} for i, values in zip(ids, found)]

    def logits(self, model, texts: list[str]) -> list[dict]:
        names = model.config.head_outputs
        if not names:
            raise RuntimeError(f"{model.export_dir}: this model has no task head, so no logits")
        rows = [{("logits" if len(names) == 1 else name): out[name] for name in names}
                for _, out, _ in model.stream(texts, batch_size=self.batch_size)]
        return [{name: (list(v) if v.ndim > 1 else v) for name, v in row.items()} for row in rows]


def _plain(value):
    """numpy values as the Python ones Spark's schema takes (float32 arrays as lists of floats)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- reading and writing -------------------------------------------------------------------------------

TEXT_SCHEMA = "id string, text string, error string"


def read_input(spark: SparkSession, glob: str, input_format: str, max_chars: int | None = None) -> DataFrame:
    """text (one text per line: `id` "<file name>:<line>", 1-based), jsonl or parquet."""
    if input_format == "jsonl":
        return spark.read.json(glob)
    if input_format == "parquet":
        return spark.read.parquet(glob)
    if input_format != "text":
        raise ValueError(f"input format {input_format!r}: expected text, jsonl or parquet")
    files = spark.read.format("binaryFile").load(glob)
    names = [PurePosixPath(row.path).name for row in files.select("path").collect()]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{glob}: two input files are named {twice[0]!r} (text ids are '<file name>:<line>')")
    return spark.createDataFrame(files.select("path", "content").rdd.mapPartitions(TextLines(max_chars)), TEXT_SCHEMA)


class TextLines:
    """Whole files in (binaryFile rows), one row per line out, split as `kobert run --input` splits:
    on "\\n" only ("\\r\\n" accepted), strict UTF-8 (a bad line gets an error, not replacement characters)."""

    def __init__(self, max_chars: int | None):
        self.max_chars = max_chars

    def __call__(self, files):
        for path, content in files:
            yield from self.lines(PurePosixPath(path).name, bytes(content))

    def lines(self, name: str, content: bytes):
        pieces = content.split(b"\n")
        if pieces[-1] == b"":
            pieces.pop()
        for number, raw in enumerate(pieces, 1):
            where = f"{name}:{number}"
            try:
                text = raw.removesuffix(b"\r").decode("utf-8")
            except UnicodeDecodeError as e:
                yield where, None, f"{where}: not valid UTF-8 (byte {e.start + 1} of the line)"
                continue
            yield where, text if self.max_chars is None else text[:self.max_chars], None


MARKER = "_KOBERT_BULK"  # in every kobert bulk output: the one kind of folder --force may replace


def prepare_output(spark: SparkSession, output: str, force: bool) -> None:
    """Refuse an existing output folder unless it is an earlier kobert bulk output and `force`."""
    fs, path = _filesystem(spark, output)
    if not fs.exists(path):
        return
    if not fs.exists(path.suffix("/" + MARKER)):
        raise FileExistsError(f"{output}: exists and is not a kobert bulk output; not replaced")
    if not force:
        raise FileExistsError(f"{output}: exists (an earlier kobert bulk output; pass --force to replace it)")
    fs.delete(path, True)


def write_output(df: DataFrame, output: str, output_format: str, about: dict) -> None:
    """Spark's own part files and _SUCCESS, then the marker (what the job was)."""
    if output_format not in ("parquet", "jsonl"):
        raise ValueError(f"output format {output_format!r}: expected parquet or jsonl")
    writer = df.write.mode("errorifexists")
    if output_format == "jsonl":
        writer.option("ignoreNullFields", "false").json(output)
    else:
        writer.parquet(output)
    fs, path = _filesystem(df.sparkSession, output)
    stream = fs.create(path.suffix("/" + MARKER), True)
    try:
        stream.write(bytearray(json.dumps(about, ensure_ascii=False).encode("utf-8")))
    finally:
        stream.close()


def _filesystem(spark: SparkSession, output: str):
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(output)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


# --- a standalone cluster on this machine (the test and the benchmark) -----------------------------


def free_port() -> int:
    """A free port on 127.0.0.1 below Linux's ephemeral range (32768-60999), where the JVMs' own random ports
    land (so a port chosen here cannot be taken by one of them before its server binds it)."""
    import random
    import socket

    for port in random.sample(range(10_000, 32_768), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port on 127.0.0.1 between 10000 and 32767")


@contextlib.contextmanager
def loopback_cluster(work_dir: str | Path, workers: int = 2, cores: int = 1, memory: str = "1g",
                     env: dict | None = None):
    """A Spark standalone master and `workers` workers on 127.0.0.1, started with Spark's own launch
    classes (as sbin/start-master.sh does), yielding the master's URL; every process is stopped by its
    process group at the end. `env` reaches the executors (PYTHONPATH, PYSPARK_PYTHON)."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    port, processes = free_port(), []
    url = f"spark://127.0.0.1:{port}"
    try:
        processes.append(_launch("org.apache.spark.deploy.master.Master", ["--host", "127.0.0.1", "--port", str(port),
                                 "--webui-port", str(free_port())], work_dir / "master.log", env))
        for n in range(workers):
            processes.append(_launch("org.apache.spark.deploy.worker.Worker", [
                "--host", "127.0.0.1", "--cores", str(cores), "--memory", memory, "--webui-port", str(free_port()),
                "--work-dir", str(work_dir / f"worker{n}"), url], work_dir / f"worker{n}.log", env))
        # A driver that finds no live master gives up ("All masters are unresponsive"): wait for every JVM.
        _wait_for(work_dir / "master.log", "I have been elected leader", processes[0])
        for n in range(workers):
            _wait_for(work_dir / f"worker{n}.log", "Successfully registered with master", processes[n + 1])
        yield url
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:  # a JVM stuck in its shutdown hooks: never left running
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=60)


def _wait_for(log: Path, line: str, process, timeout: float = 300) -> None:
    import time

    deadline = time.monotonic() + timeout
    while line not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{log}: no {line!r} ({'exited' if process.poll() is not None else 'timed out'}):\n{tail}")
        time.sleep(0.5)


def _launch(main_class: str, args: list[str], log: Path, env: dict | None):
    import pyspark

    home = Path(pyspark.__file__).parent
    # What bin/load-spark-env.sh sets: without it a worker cannot build its executors' class path
    # ("Cannot find any build directories").
    scala = next(home.glob("jars/scala-library-*.jar")).name.removeprefix("scala-library-").rsplit(".", 2)[0]
    full_env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_SCALA_VERSION": scala,
                "PYSPARK_PYTHON": sys.executable, **(env or {})}
    with log.open("wb") as out:
        return subprocess.Popen(["java", "-Xmx256m", "-cp", f"{home}/jars/*", main_class, *args], env=full_env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def job_error(error: Exception) -> str:
    """A failed job's cause in one line: the last exception line of the executor's Python traceback."""
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and " " not in head and not head.startswith(("org.", "java.")):
            return line.split(":", 1)[1].strip() if ":" in line else line
    java = next((line.lstrip(": ") for line in lines if "Exception: " in line), None)  # a JVM-side cause
    return f"{lines[0]} {java}" if lines and java else (lines[0] if lines else type(error).__name__)


def is_job_error(error: Exception) -> bool:
    from pyspark.errors import PySparkException
    from py4j.protocol import Py4JJavaError

    return isinstance(error, (PySparkException, Py4JJavaError))


__all__ = ["session", "job_session", "ship", "labels", "logits", "embeddings", "entities", "answers", "predict", "read_input",
           "prepare_output", "write_output", "TASKS"]
