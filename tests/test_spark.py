"""kobert.spark and `kobert bulk` against the plain runtime (`runtimes.load`), on a loopback local session
and on a real standalone cluster (a master and two workers started with Spark's own launch classes).

One local[2, 2] session serves the module (local[N, F]: a task is tried F times), tiny exports, a few rows.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pyspark = pytest.importorskip("pyspark", reason="installed by the spark extra (ci/setup.sh)")

from kobert import runtimes, spark as ks  # noqa: E402
from kobert.checkpoint import init_checkpoint, shipped  # noqa: E402
from kobert.config import preset  # noqa: E402
from kobert.export import export  # noqa: E402

TEXTS = ["좋은 영화", "별로다 ㅠㅠ", "재밌어요 ㅋㅋㅋ 강추", "스토리가 너무 길고 지루했다", "ok 2019 BERT", "최고"]
REPO = Path(__file__).resolve().parent.parent


def _export(root: Path, head: str, labels: int) -> Path:
    checkpoint = init_checkpoint(preset("tiny").with_head(head, labels), root / f"ck-{head}", seed=5)
    return export(checkpoint, root / f"ex-{head}", targets=["onnx"], tokenizer=shipped("tokenizer")).out


class Exports(dict):
    """A tiny export per head, made when a test first asks for it."""

    LABELS = {"sequence_classification": 2, "token_classification": 3, "question_answering": 2}

    def __init__(self, root: Path):
        super().__init__()
        self.root = root

    def __missing__(self, head: str) -> Path:
        self[head] = _export(self.root, head, self.LABELS[head])
        return self[head]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return Exports(tmp_path_factory.mktemp("spark"))


@pytest.fixture(scope="module")
def session():
    spark = ks.session("local[2,2]", {"spark.default.parallelism": "2", "spark.sql.shuffle.partitions": "2"})
    yield spark
    spark.stop()


def frame(session, texts=TEXTS, partitions=2):
    return session.createDataFrame([(f"r{i}", t) for i, t in enumerate(texts)], "id string, text string").repartition(
        partitions, "id")


def by_id(rows) -> dict:
    return {row["id"]: row for row in rows}


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_labels_logits_embeddings_equal_the_runtime_row_for_row(session, exports, runtime):
    ex = exports["sequence_classification"]
    with runtimes.load(ex, runtime=runtime) as rt:
        labels, logits, vectors = rt.classify(TEXTS), rt.logits(TEXTS), rt.embed(TEXTS)
    got = by_id(ks.labels(frame(session), ex, runtime=runtime).collect())
    assert [{"label": got[f"r{i}"]["label"], "score": pytest.approx(got[f"r{i}"]["score"], abs=1e-5)}
            for i in range(len(TEXTS))] == labels
    got_logits = by_id(ks.logits(frame(session), ex, runtime=runtime).collect())
    got_vectors = by_id(ks.embeddings(frame(session), ex, runtime=runtime).collect())
    for i in range(len(TEXTS)):
        assert got_logits[f"r{i}"]["logits"] == pytest.approx(logits[i].tolist(), abs=1e-5)
        assert got_vectors[f"r{i}"]["embedding"] == pytest.approx(vectors[i].tolist(), abs=1e-5)


def test_entities_and_answers_equal_the_runtime(session, exports):
    with runtimes.load(exports["token_classification"]) as rt:
        expected = rt.entities(TEXTS)
    got = by_id(ks.entities(frame(session), exports["token_classification"]).collect())
    for i, entities in enumerate(expected):
        row = [e.asDict() for e in got[f"r{i}"]["entities"]]
        assert [{**e, "score": pytest.approx(e["score"], abs=1e-5)} for e in entities] == row
    questions = ["무엇이 좋았나?"] * len(TEXTS)
    with runtimes.load(exports["question_answering"]) as rt:
        answers = rt.answer(questions, TEXTS)
    df = session.createDataFrame([(i, q, t) for i, (q, t) in enumerate(zip(questions, TEXTS))],
                                 "id long, question string, text string")
    got = by_id(ks.answers(df, exports["question_answering"]).collect())
    assert [{k: got[i][k] for k in ("answer", "start", "end")} for i in range(len(TEXTS))] == \
        [{k: a[k] for k in ("answer", "start", "end")} for a in answers]


def test_text_files_give_each_line_once_with_its_id_and_bad_rows_their_error(session, exports, tmp_path):
    (tmp_path / "a.txt").write_bytes("좋은 영화\n별로다\r\n".encode() + b"\xff\xfe bad\n" + "가".encode() * 350_000 + b"\n")
    (tmp_path / "b.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    rows = ks.read_input(session, str(tmp_path / "*.txt"), "text", max_chars=8192).repartition(3, "id")
    got = ks.labels(rows, exports["sequence_classification"]).collect()
    ids = [row["id"] for row in got]
    assert sorted(ids) == sorted([f"a.txt:{n}" for n in range(1, 5)] + [f"b.txt:{n}" for n in range(1, 7)])
    errors = {row["id"]: row["error"] for row in got if row["error"]}
    assert errors == {"a.txt:3": "a.txt:3: not valid UTF-8 (byte 1 of the line)"}
    with runtimes.load(exports["sequence_classification"]) as rt:
        expected = rt.classify(["가" * 8192])[0]  # the 1 MB line: cut to the cap, as kobert run does, and scored
    assert by_id(got)["a.txt:4"]["score"] == pytest.approx(expected["score"], abs=1e-5)


def _flaky_load(failures: int):
    """runtimes.load, whose model fails the first `failures` attempts of partition 0."""
    def load(*args, **kwargs):
        from pyspark import TaskContext

        from kobert import runtimes as rts

        model = rts.load(*args, **kwargs)
        forward = model.stream_encoded

        def stream_encoded(*a, **k):
            context = TaskContext.get()
            if context.partitionId() == 0 and context.attemptNumber() < failures:
                raise RuntimeError(f"injected failure, attempt {context.attemptNumber()}")
            return forward(*a, **k)

        model.stream_encoded = stream_encoded
        return model
    return load


def test_a_failed_first_attempt_is_retried_without_lost_or_duplicated_rows(session, exports):
    texts = TEXTS * 5
    got = ks.labels(frame(session, texts), exports["sequence_classification"], load=_flaky_load(1)).collect()
    assert sorted(row["id"] for row in got) == sorted(f"r{i}" for i in range(len(texts)))
    with pytest.raises(Exception, match="injected failure, attempt 1"):  # both attempts fail: the injection is real
        ks.labels(frame(session, texts), exports["sequence_classification"], load=_flaky_load(2)).collect()


def test_a_shipped_exports_tar_is_deleted_when_the_job_ends_failed_or_not(session, exports, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where ship() packs the export
    ex = exports["sequence_classification"]
    with ks.ship(session, ex) as reference:
        assert len(list(tmp_path.glob("kobert-ship-*/*.tar"))) == 1  # there while the job runs
        assert len(ks.labels(frame(session), reference).collect()) == len(TEXTS)
    assert not list(tmp_path.glob("kobert-ship-*"))
    with pytest.raises(Exception, match="injected failure, attempt 1"):
        with ks.ship(session, ex) as reference:
            ks.labels(frame(session), reference, load=_flaky_load(2)).collect()
    assert not list(tmp_path.glob("kobert-ship-*"))


def _counting_load(folder: str):
    def load(*args, **kwargs):
        import os as _os
        import uuid as _uuid

        from kobert import runtimes as rts

        Path(folder, f"{_os.getpid()}-{_uuid.uuid4().hex}").write_text(str(kwargs["threads"]))
        return rts.load(*args, **kwargs)
    return load


def test_one_model_load_per_python_worker(session, exports, tmp_path):
    df = frame(session, TEXTS * 10, partitions=6)
    got = ks.labels(df, exports["sequence_classification"], batch_size=4, load=_counting_load(str(tmp_path))).collect()
    assert len(got) == len(TEXTS) * 10
    pids = [name.split("-")[0] for name in os.listdir(tmp_path)]
    assert pids and len(pids) == len(set(pids)) <= 2, pids  # 6 tasks, at most two workers, one load each
    assert {p.read_text() for p in tmp_path.iterdir()} == {"1"}  # threads = spark.task.cpus


def test_a_tampered_export_fails_the_job_naming_the_file(session, exports, tmp_path):
    copy = shutil.copytree(exports["sequence_classification"], tmp_path / "tampered")
    with open(copy / "onnx" / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(Exception, match=r"onnx/model.onnx: sha256 differs from the manifest"):
        ks.labels(frame(session), copy).collect()


def _listening(pids: set[int]) -> list[str]:
    import psutil

    return sorted(f"{c.laddr.ip}:{c.laddr.port}" for pid in pids for c in psutil.Process(pid).net_connections("inet")
                  if c.status == psutil.CONN_LISTEN)


def test_the_local_session_listens_on_loopback_only(session, exports):
    import psutil

    ks.labels(frame(session), exports["sequence_classification"]).collect()  # the Python workers are up
    children = {p.pid for p in psutil.Process().children(recursive=True)} | {os.getpid()}
    listening = _listening(children)
    assert listening and all(a.startswith(("127.", "::1", "::ffff:127.")) for a in listening), listening


# --- a real cluster: a standalone master and two workers on 127.0.0.1 ---------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One master and two workers for the module's cluster tests; each test's driver is an application of its own."""
    with ks.loopback_cluster(tmp_path_factory.mktemp("cluster"), workers=2, cores=1,
                             env={"PYTHONPATH": str(REPO)}) as url:
        yield url


DRIVER = """
import json, shutil, sys
from kobert import spark as ks
session = ks.session(sys.argv[1], {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                                   "spark.ui.enabled": "false", "spark.executor.memory": "512m"})
with ks.ship(session, sys.argv[2]) as reference:
    shutil.move(sys.argv[2], sys.argv[2] + ".moved")  # the executors can only read the shipped copy
    df = session.createDataFrame([(f"r{i}", t) for i, t in enumerate(json.loads(sys.argv[3]))], "id string, text string")
    rows = ks.labels(df.repartition(2, "id"), reference).collect()
    session.stop()  # inside the block: no executor is left to fetch the tar after it is deleted
print(json.dumps({r["id"]: [r["label"], r["score"], r["error"]] for r in rows}))
"""


def test_a_standalone_cluster_gives_the_runtimes_rows_from_a_shipped_export(cluster, exports, tmp_path):
    ex = shutil.copytree(exports["sequence_classification"], tmp_path / "export")
    with runtimes.load(ex) as rt:
        expected = rt.classify(TEXTS)
    driver_tmp = tmp_path / "driver-tmp"  # the driver's $TMPDIR: where ship() packs the export
    driver_tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "SPARK_LOCAL_IP": "127.0.0.1", "TMPDIR": str(driver_tmp)}
    result = subprocess.run([sys.executable, "-c", DRIVER, cluster, str(ex), json.dumps(TEXTS)], env=env,
                            capture_output=True, text=True, timeout=420)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(driver_tmp.glob("kobert-ship-*")), "the shipped export's tar outlived the job"
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert [(got[f"r{i}"][0], got[f"r{i}"][2]) for i in range(len(TEXTS))] == [(e["label"], None) for e in expected]
    assert [got[f"r{i}"][1] for i in range(len(TEXTS))] == pytest.approx([e["score"] for e in expected], abs=1e-5)


BULK_DRIVER = """
import json, sys
from kobert import bulk, spark as ks
url, export, work = sys.argv[1:4]
session = ks.session(url, {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                           "spark.ui.enabled": "false", "spark.executor.memory": "512m"})
session.read.json(work + "/in.jsonl").write.parquet(work + "/in.parquet")
inputs = {"text": ["--input-format", "text"], "jsonl": ["--input-format", "jsonl", "--id-col", "key", "--text-col", "body"],
          "parquet": ["--input-format", "parquet", "--id-col", "key", "--text-col", "body"]}
codes = {}
for name, flags in inputs.items():  # each a whole `kobert bulk` job on the running cluster session, export shipped
    codes[name] = bulk.main(["labels", "--export", export, "--runtime", "onnx", "--input", f"{work}/in.{name}", *flags,
                             "--output", f"{work}/out-{name}", "--format", "jsonl", "--master", url, "--partitions", "2"])
session.stop()
print(json.dumps(codes))
"""


def test_kobert_bulk_on_the_standalone_cluster_gives_kobert_runs_rows_for_text_jsonl_and_parquet(cluster, exports,
                                                                                                 tmp_path):
    """`kobert bulk labels` against the loopback cluster (the export shipped), once per input format, in one driver."""
    ex = exports["sequence_classification"]
    with runtimes.load(ex) as rt:
        expected = rt.classify(TEXTS)
    work = tmp_path / "work"
    work.mkdir()
    (work / "in.text").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    (work / "in.jsonl").write_text("".join(json.dumps({"key": f"k{i}", "body": t}, ensure_ascii=False) + "\n"
                                           for i, t in enumerate(TEXTS)), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "SPARK_LOCAL_IP": "127.0.0.1"}
    result = subprocess.run([sys.executable, "-c", BULK_DRIVER, cluster, str(ex), str(work)], env=env,
                            capture_output=True, text=True, timeout=420)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"text": 0, "jsonl": 0, "parquet": 0}, result.stderr[-3000:]
    keys = {"text": [f"in.text:{i + 1}" for i in range(len(TEXTS))], "jsonl": [f"k{i}" for i in range(len(TEXTS))]}
    keys["parquet"] = keys["jsonl"]
    for name, ids in keys.items():
        assert (work / f"out-{name}" / "_SUCCESS").is_file(), name
        rows = [json.loads(line) for part in sorted((work / f"out-{name}").glob("part-*")) for line in
                part.read_text(encoding="utf-8").splitlines()]
        got = {r["id" if name == "text" else "key"]: r for r in rows}
        assert sorted(got) == sorted(ids), name
        assert [got[i]["label"] for i in ids] == [e["label"] for e in expected], name
        assert [got[i]["score"] for i in ids] == pytest.approx([e["score"] for e in expected], abs=1e-5), name


def test_kobert_bulk_reads_jsonl_and_parquet_under_their_own_column_names(session, exports, tmp_path):
    ex = exports["sequence_classification"]
    with runtimes.load(ex) as rt:
        expected = {f"k{i}": label for i, label in enumerate(rt.classify(TEXTS))}
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"key": f"k{i}", "body": t}, ensure_ascii=False) + "\n"
                                               for i, t in enumerate(TEXTS)), encoding="utf-8")
    command = [sys.executable, "-m", "kobert.bulk", "labels", "--export", str(ex), "--runtime", "onnx", "--input",
               str(tmp_path / "in.jsonl"), "--input-format", "jsonl", "--id-col", "key", "--text-col", "body",
               "--output", str(tmp_path / "out"), "--format", "parquet", "--master", "local[2]", "--partitions", "2"]
    result = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "_SUCCESS").is_file()
    got = {r["key"]: {"label": r["label"], "score": r["score"]} for r in session.read.parquet(str(tmp_path / "out")).collect()}
    assert got.keys() == expected.keys()
    assert all(got[k]["label"] == e["label"] and got[k]["score"] == pytest.approx(e["score"], abs=1e-5)
               for k, e in expected.items())
    session.read.json(str(tmp_path / "in.jsonl")).write.parquet(str(tmp_path / "in.parquet"))
    rows = ks.read_input(session, str(tmp_path / "in.parquet"), "parquet")
    again = {r["key"]: r["label"] for r in ks.labels(rows, ex, id_col="key", text_col="body").collect()}
    assert again == {k: e["label"] for k, e in expected.items()}


def test_an_output_folder_is_replaced_only_when_it_is_an_earlier_bulk_output_and_forced(session, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="is not a kobert bulk output"):
        ks.prepare_output(session, str(mine), force=True)
    assert (mine / "keep.txt").is_file()
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / ks.MARKER).write_text("{}")
    with pytest.raises(FileExistsError, match="pass --force"):
        ks.prepare_output(session, str(earlier), force=False)
    ks.prepare_output(session, str(earlier), force=True)
    assert not earlier.exists()


# --- kobert bulk against kobert run, for the TensorFlow, TFLite and OpenVINO artifacts ---------------------


@pytest.fixture(scope="module")
def tf_tflite_openvino(tmp_path_factory):
    """One tiny classifier exported once for the three runtimes (the export costs more than the jobs)."""
    pytest.importorskip("tensorflow", reason="installed by ci/setup.sh")
    pytest.importorskip("openvino", reason="installed by ci/setup.sh")
    root = tmp_path_factory.mktemp("spark-tf")
    checkpoint = init_checkpoint(preset("tiny").with_head("sequence_classification", 2), root / "ck", seed=5)
    return export(checkpoint, root / "ex", targets=["tf", "tflite", "openvino"], tokenizer=shipped("tokenizer")).out


def _cli(capsys, *argv) -> str:
    from kobert.cli import main

    capsys.readouterr()
    assert main(["--quiet", *map(str, argv)]) == 0, capsys.readouterr().err[-3000:]
    return capsys.readouterr().out


def _bulk_rows(folder: Path) -> dict:
    rows = [json.loads(line) for part in sorted(folder.glob("part-*")) for line in part.read_text("utf-8").splitlines()]
    assert (folder / "_SUCCESS").is_file() and len(rows) == len({r["id"] for r in rows})
    return {row["id"]: row for row in rows}


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["tf", "tflite", "openvino"])
def test_kobert_bulk_gives_kobert_runs_rows_for_tf_tflite_and_openvino(session, tf_tflite_openvino, runtime, tmp_path,
                                                                      capsys):
    # In-process, on the module's session: kobert bulk uses a running session and leaves it running.
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    for output in ("labels", "logits"):
        expected = [json.loads(line) for line in _cli(capsys, "run", tf_tflite_openvino, "--runtime", runtime,
                                                       "--output", output, "--input", reviews).splitlines()]
        _cli(capsys, "bulk", output, "--export", tf_tflite_openvino, "--runtime", runtime, "--input", reviews,
             "--output", tmp_path / output, "--format", "jsonl", "--master", "local[2]", "--partitions", "2")
        got = _bulk_rows(tmp_path / output)
        assert sorted(got) == sorted(f"reviews.txt:{n}" for n in range(1, len(TEXTS) + 1))
        for n, row in enumerate(expected, 1):
            mine = got[f"reviews.txt:{n}"]
            assert mine["error"] is None and mine["id"] == f"reviews.txt:{n}"
            if output == "labels":
                assert (mine["label"], mine["score"]) == (row["label"], pytest.approx(row["score"], abs=1e-5))
            else:
                assert mine["logits"] == pytest.approx(row["logits"], abs=1e-5)
    assert session.sparkContext._jsc is not None, "kobert bulk stopped the session it did not start"
