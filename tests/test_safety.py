"""Safe on the real path: user folders, tampered files, streamed input files, bad input, one-line errors.

Each test drives the real command (`kobert.cli.main`, or a subprocess where a signal is sent) and
checks what a user would see: exit codes, stderr, what is left on disk. Per-runtime checks (input
ranges, threads) live in parity_tests/test_parity.py, beside every runtime.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from kobert import runtimes
from kobert.checkpoint import init_checkpoint, shipped
from kobert.cli import main
from kobert.config import KoBertConfig, preset
from kobert.runtimes.base import IntegrityError

KOBERT = [sys.executable, "-m", "kobert.cli"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return init_checkpoint(preset("tiny").with_head("sequence_classification", 2),
                           tmp_path_factory.mktemp("ck") / "ck", seed=9)


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "export"
    assert main(["--quiet", "export", str(checkpoint), "--to", "onnx", "--tokenizer", str(shipped("tokenizer")),
                 "--out", str(out)]) == 0
    return out


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"kobert {command}: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# --- 1. folders ---------------------------------------------------------------------------------


def test_force_replaces_only_an_earlier_export(checkpoint, exported, tmp_path, capsys, monkeypatch):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("years of work")
    assert main(["--quiet", "export", str(checkpoint), "--to", "onnx", "--out", str(thesis), "--force"]) == 2
    assert "not a kobert export" in one_line_error(capsys, "export")
    assert sorted(p.name for p in thesis.iterdir()) == ["chapter1.tex"]
    # `--out .` from inside a user's folder: refused too, and nothing is created beside it.
    monkeypatch.chdir(thesis)
    assert main(["--quiet", "export", str(checkpoint), "--to", "onnx", "--out", ".", "--force"]) == 2
    one_line_error(capsys, "export")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]
    assert (thesis / "chapter1.tex").read_text() == "years of work"


def test_sigterm_during_export_removes_the_staging_folder(checkpoint, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen([*KOBERT, "--quiet", "export", str(checkpoint), "--to", "onnx,tf,tf2onnx", "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".out.partial-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(tmp_path.glob(".out.partial-*")), "the export never started staging"
        time.sleep(1.0)  # well inside the build
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [], list(tmp_path.iterdir())


def test_a_killed_exports_leftovers_are_removed_by_the_next_export_and_nothing_else(checkpoint, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen([*KOBERT, "--quiet", "export", str(checkpoint), "--to", "onnx", "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.partial-*/.kobert-staging")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()  # kill -9: no handler runs
    process.wait()
    leftovers = list(tmp_path.glob(".out.partial-*"))
    assert leftovers, "kill -9 should leave the staging folder (that is what the next export cleans)"
    unmarked = tmp_path / ".out.partial-mine"  # not ours: no marker
    unmarked.mkdir()
    assert main(["--quiet", "export", str(checkpoint), "--to", "onnx", "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.partial-mine", "out"]


def test_manifest_paths_must_stay_inside_the_export(exported, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["artifacts"]["onnx"]["files"] = ["../../etc/passwd"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="outside the export folder"):
        runtimes.load(copy, runtime="onnx")


# --- 2. integrity -------------------------------------------------------------------------------


def swap_embedding_rows(onnx_file: Path, a: int, b: int) -> None:
    """What a tampered artifact looks like: two token embeddings exchanged (e.g. ▁쓰레기 <-> ▁최고)."""
    model = onnx.load(str(onnx_file))
    for initializer in model.graph.initializer:
        array = numpy_helper.to_array(initializer)
        if array.ndim == 2 and array.shape[0] == 8002:
            array = array.copy()
            array[[a, b]] = array[[b, a]]
            initializer.CopyFrom(numpy_helper.from_array(array, initializer.name))
            break
    else:
        raise AssertionError("no embedding table found")
    onnx.save(model, str(onnx_file))


def test_a_tampered_artifact_fails_parity_and_load_naming_the_file(exported, tmp_path, capsys):
    import shutil

    copy = tmp_path / "tampered"
    shutil.copytree(exported, copy)
    swap_embedding_rows(copy / "onnx" / "model.onnx", 100, 200)
    with pytest.raises(IntegrityError, match="onnx/model.onnx: sha256 differs"):
        runtimes.load(copy, runtime="onnx")
    assert main(["--quiet", "parity", str(copy)]) == 1
    captured = capsys.readouterr()
    assert "onnx/model.onnx: sha256 differs" in captured.err + captured.out
    # A user who knows what they changed can still run it, on purpose.
    assert main(["--quiet", "run", str(copy), "--runtime", "onnx", "--no-verify", "좋다"]) == 0
    assert main(["--quiet", "parity", str(exported)]) == 0


def test_a_file_added_to_an_artifact_folder_fails_verification(tmp_path, checkpoint):
    out = tmp_path / "tf-export"
    assert main(["--quiet", "export", str(checkpoint), "--to", "tf", "--out", str(out)]) == 0
    (out / "tf" / "extra.pb").write_bytes(b"injected")
    with pytest.raises(IntegrityError, match="extra.pb: not in the manifest"):
        runtimes.load(out, runtime="tf")


# --- 3. streaming input -------------------------------------------------------------------------

AWKWARD_LINES = ["평범한 리뷰", "폼피드\x0c가 든 리뷰", "줄 구분자\u2028가 든 리뷰", "레코드 구분자\x1e", "NEL\x85문자",
                 "외톨이 \r 캐리지 리턴", "", "마지막 리뷰 -_-"]


def test_run_input_splits_on_newline_only_and_keeps_order(exported, tmp_path, capsys):
    path = tmp_path / "reviews.txt"
    path.write_bytes("\n".join(AWKWARD_LINES[:-1]).encode() + b"\r\n" + AWKWARD_LINES[-1].encode() + b"\n")
    assert main(["--quiet", "run", str(exported), "--runtime", "onnx", "--output", "logits", "--batch-size", "3",
                 "--input", str(path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == AWKWARD_LINES
    with runtimes.load(exported, runtime="torch") as reference:
        for row in rows:  # each line alone through the reference: batching and sorting changed nothing
            np.testing.assert_allclose(row["logits"], reference.logits([row["text"]])[0], atol=1e-4)


def test_stream_reads_lazily_in_bounded_windows(exported):
    from kobert.encoding import WINDOW_BATCHES

    produced = 0

    def endless_reviews():
        nonlocal produced
        while True:
            produced += 1
            yield f"리뷰 번호 {produced} " + "재밌다 " * (produced % 7)

    with runtimes.load(exported, runtime="onnx") as rt:
        stream = rt.stream(endless_reviews(), batch_size=4)
        first = [next(stream) for _ in range(10)]
    assert [text for text, _, _ in first] == [f"리뷰 번호 {i} " + "재밌다 " * (i % 7) for i in range(1, 11)]
    assert produced <= 2 * 4 * WINDOW_BATCHES, "memory must not grow with the number of texts"


def test_embed_and_logits_take_any_number_of_texts_in_input_order(exported):
    texts = [f"문장 {i} " + "좋아요 " * (i % 5) for i in range(70)]
    with runtimes.load(exported, runtime="onnx") as rt:
        batched = rt.logits(texts, batch_size=8)
        alone = np.concatenate([rt.logits([t]) for t in texts[:10]])
        embeddings = rt.embed(iter(texts), pooling="mean", normalize=True, batch_size=16)
    assert batched.shape == (70, 2) and embeddings.shape == (70, 32)
    np.testing.assert_allclose(batched[:10], alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


# --- 4. and 7. bad input: one clear line, exit 2 ------------------------------------------------


def test_text_that_is_not_valid_unicode_is_named(exported, tmp_path, capsys):
    assert main(["--quiet", "run", str(exported), "--runtime", "onnx", "좋다", "bad \udc80 surrogate"]) == 2
    assert "text 1: not valid Unicode" in one_line_error(capsys, "run")
    path = tmp_path / "mixed.txt"
    path.write_bytes("좋다\n".encode() + b"broken \xff\xfe bytes\n")
    assert main(["--quiet", "run", str(exported), "--runtime", "onnx", "--input", str(path)]) == 2
    assert f"{path}:2: not valid UTF-8" in one_line_error(capsys, "run")


def test_texts_starting_with_a_dash_pass_after_double_dash(exported, capsys):
    assert main(["--quiet", "run", str(exported), "--runtime", "onnx", "--output", "logits", "--", "-_- 별로", "--최고"]) == 0
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == ["-_- 별로", "--최고"]


def write_config(folder: Path, checkpoint: Path, change) -> Path:
    import shutil

    shutil.copytree(checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(change(config)))
    return folder


@pytest.mark.parametrize("name,change,expected", [
    ("list", lambda c: [c], "expected a JSON object"),
    ("zero-heads", lambda c: {**c, "num_attention_heads": 0}, "num_attention_heads must be a positive integer"),
    ("string-hidden", lambda c: {**c, "hidden_size": "768"}, "hidden_size must be a positive integer"),
])
def test_broken_config_json_is_one_line(checkpoint, tmp_path, capsys, name, change, expected):
    broken = write_config(tmp_path / name, checkpoint, change)
    assert main(["--quiet", "inspect", str(broken)]) == 2
    assert expected in one_line_error(capsys, "inspect")
    assert main(["--quiet", "export", str(broken), "--to", "onnx", "--out", str(tmp_path / "out")]) == 2
    assert expected in one_line_error(capsys, "export")
    assert not (tmp_path / "out").exists()


def test_user_mistakes_end_in_one_line_and_exit_2(checkpoint, exported, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    assert main(["--quiet", "export", str(checkpoint), "--to", "onnx", "--out", str(a_file)]) == 2
    assert "exists and is not a folder" in one_line_error(capsys, "export")
    assert main(["--quiet", "export", str(checkpoint), "--to", "onnx", "--out", "/proc/kobert-cannot-be-here"]) == 2
    assert "cannot create the export there" in one_line_error(capsys, "export")
    assert main(["--quiet", "run", str(exported), "--runtime", "onnx", "--artifact", "mxnet", "좋다"]) == 2
    assert "no 'mxnet' artifact" in one_line_error(capsys, "run")
    assert main(["--quiet", "run", str(exported), "--runtime", "tf", "--artifact", "onnx", "좋다"]) == 2
    assert "opened by runtime onnx, not 'tf'" in one_line_error(capsys, "run")
    small_vocab = init_checkpoint(KoBertConfig(vocab_size=3001, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                               intermediate_size=64, max_position_embeddings=64), tmp_path / "small-vocab")
    assert main(["--quiet", "export", str(small_vocab), "--to", "onnx", "--tokenizer", str(shipped("tokenizer")),
                 "--out", str(tmp_path / "mismatch")]) == 2
    assert "more than the model's vocabulary of 3001" in one_line_error(capsys, "export")
    assert not (tmp_path / "mismatch").exists()


def test_version_and_progress_on_stderr(checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"kobert {__import__('kobert').__version__}"
    assert main(["export", str(checkpoint), "--to", "onnx", "--out", str(tmp_path / "loud")]) == 0
    captured = capsys.readouterr()
    assert "kobert: export 1/1: onnx" in captured.err and "kobert: parity 1/1: onnx" in captured.err
    assert "kobert:" not in captured.out
    assert main(["export", str(checkpoint), "--to", "onnx", "--out", str(tmp_path / "quiet"), "--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()  # --quiet keeps warnings: this checkpoint has no tokenizer
    assert len(err) == 1 and err[0].startswith("kobert export: warning: ") and "--tokenizer" in err[0]


# --- 9. one NSMC reader -------------------------------------------------------------------------


def test_every_command_reads_nsmc_through_one_reader(tmp_path):
    from kobert import datasets
    from kobert.export import read_eval_set
    from kobert.training import finetune

    path = tmp_path / "ratings_test.txt"
    path.write_text('id\tdocument\tlabel\n1\t"따옴표 ""안"" 문장"\t1\n2\t\t0\n4\t보통\t1\n',
                    encoding="utf-8")
    data = datasets.read_nsmc(path)
    texts, labels = read_eval_set(path)
    assert finetune.read_nsmc is datasets.read_nsmc
    assert texts == data.texts and list(labels) == data.labels
    assert data.texts[0] == '따옴표 "안" 문장'


def test_one_data_folder_setting_read_at_call_time(tmp_path, monkeypatch):
    """KOBERT_DATA_DIR (or its older name KOBERT_SHARED_DATA) names the data folder for every reader,
    NSMC included, when it is read, not when kobert is imported; KOBERT_NSMC_DIR still names NSMC alone."""
    from kobert import datasets

    for name in ("KOBERT_DATA_DIR", "KOBERT_SHARED_DATA", "KOBERT_NSMC_DIR"):
        monkeypatch.delenv(name, raising=False)
    checkout = datasets.data_dir()
    assert checkout == Path(datasets.__file__).resolve().parents[2] / "shared" / "data"  # beside this checkout
    monkeypatch.setenv("KOBERT_SHARED_DATA", str(tmp_path / "old"))
    assert datasets.data_dir() == tmp_path / "old"
    monkeypatch.setenv("KOBERT_DATA_DIR", str(tmp_path / "data"))
    assert datasets.data_dir() == datasets.default_data_dir() == tmp_path / "data"
    assert datasets.default_nsmc_dir() == tmp_path / "data" / "nsmc"
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "data" / "klue")):
        datasets.task_file("ynat", "eval")
    monkeypatch.setenv("KOBERT_NSMC_DIR", str(tmp_path / "nsmc-elsewhere"))
    assert datasets.default_nsmc_dir() == tmp_path / "nsmc-elsewhere"
    # An installed kobert (no checkout around it) keeps its data in the user's data home.
    monkeypatch.delenv("KOBERT_DATA_DIR")
    monkeypatch.delenv("KOBERT_SHARED_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(datasets, "checkout_root", lambda: None)
    assert datasets.data_dir() == tmp_path / "home" / "kobert" / "data"


def test_the_nsmc_test_file_reads_the_same_everywhere():
    from kobert import datasets
    from kobert.export import read_eval_set

    path = datasets.default_nsmc_dir() / "ratings_test.txt"
    if not path.is_file():
        pytest.skip(f"{path}: shared data not available")
    data = datasets.read_nsmc(path)
    texts, _ = read_eval_set(path)
    assert len(data) == 50_000 and texts == data.texts
    # The 233 CSV-quoted documents lose one level of quoting, as pandas and csv read them.
    raw = path.read_text(encoding="utf-8").split("\n")[1:]
    quoted = [i for i, line in enumerate(raw) if line.split("\t")[1:2] and line.split("\t")[1].startswith('"')]
    assert len(quoted) == 233 and all(raw[i].split("\t")[1] != data.texts[i] for i in quoted)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import tokenizer_bench

    assert tokenizer_bench.load_documents()[1] == data.texts
