"""Input validation: `kobert init` never overwrites a user's folder, task files with broken rows are named
by file and line, the parsers refuse non-positive training settings, `kobert eval` names a wrong head,
and a full disk during `kobert export` is one line. Each drives the real command or reader."""

import errno
import json

import pytest

from kobert import datasets
from kobert.checkpoint import INIT_MARKER, init_checkpoint, shipped
from kobert.cli import main
from kobert.config import preset


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"kobert {command}: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# --- kobert init --out ----------------------------------------------------------------------------


def test_init_refuses_a_users_folder_and_replaces_only_its_own(tmp_path, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "config.json").write_text("my own config")
    for force in ([], ["--force"]):
        assert main(["--quiet", "init", "--preset", "tiny", "--out", str(thesis), *force]) == 2
        assert ("not an earlier `kobert init` output" if force else "exists and is not empty") in \
            one_line_error(capsys, "init")
        assert [p.name for p in thesis.iterdir()] == ["config.json"]
        assert (thesis / "config.json").read_text() == "my own config"
    assert [p.name for p in tmp_path.iterdir()] == ["thesis"]  # no staging left beside it

    ours = tmp_path / "ours"
    ours.mkdir()  # an empty folder is free
    assert main(["--quiet", "init", "--preset", "tiny", "--out", str(ours)]) == 0
    assert sorted(p.name for p in ours.iterdir()) == sorted([INIT_MARKER, "config.json", "model.safetensors"])
    assert main(["--quiet", "init", "--preset", "tiny", "--out", str(ours), "--seed", "1"]) == 2
    assert "exists and is not empty (--force replaces" in one_line_error(capsys, "init")
    before = (ours / "model.safetensors").read_bytes()
    assert main(["--quiet", "init", "--preset", "tiny", "--out", str(ours), "--seed", "1", "--force"]) == 0
    assert (ours / "model.safetensors").read_bytes() != before
    (ours / "notes.txt").write_text("the user wrote here since")
    assert main(["--quiet", "init", "--preset", "tiny", "--out", str(ours), "--force"]) == 2
    assert "(it holds notes.txt)" in one_line_error(capsys, "init")
    assert (ours / "notes.txt").is_file()


# --- task files: broken rows named by file and line ----------------------------------------------

NSMC_HEADER = "id\tdocument\tlabel\n"


@pytest.mark.parametrize("body, message", [
    ("1\t좋다\t1\n2\t별로\n3\t최고\t1\n", ":3: expected 3 tab-separated fields (id, document, label), got 2"),
    ('1\t좋다\t1\n2\t"열린 따옴표\t0\n3\t최고\t1\n4\t별로\t0\n', ":3: a quote opened on this line is never closed"),
    ('1\t좋다\t1\n2\t"열린 따옴표\t0\n3\t최고\t1\n4\t"별로"\t0\n', ":3: a stray or unbalanced quote"),
    ('1\t좋다\t1\n2\t"줄이\n바뀐 리뷰"\t0\n', ":3: a quoted field runs over lines 3-4"),
    ('1\t좋다\t1\n2\t"닫힌 따옴표" 뒤\t0\n', ":3: a stray or unbalanced quote"),
    ("1\t좋다\t1\n2\t캐리지\r리턴\t0\n", ":3: expected 3 tab-separated fields (id, document, label), got 2"),
])
def test_broken_nsmc_rows_are_named_by_file_and_line(tmp_path, body, message):
    path = tmp_path / "ratings_train.txt"
    path.write_text(NSMC_HEADER + body, encoding="utf-8", newline="")
    with pytest.raises(ValueError) as error:
        datasets.read_nsmc(path)
    assert str(error.value).startswith(f"{path}{message}"), str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("reader, text, message", [
    (datasets.read_ynat, 'label\ttext\n정치\t"열린 따옴표\n경제\t제목\n', ":2: a quote opened on this line is never closed"),
    (datasets.read_ynat, "정치\t제목\n경제\n", ":2: expected 'label<TAB>title'"),
    (datasets.read_korsts, "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2\n"
                           "main\tf\t2012\t1\t5.0\t문장\n", ":2: expected 7 tab-separated fields"),
])
def test_broken_task_rows_are_named_by_file_and_line(tmp_path, reader, text, message):
    path = tmp_path / "data.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as error:
        reader(path)
    assert str(error.value).startswith(f"{path}{message}"), str(error.value)


# --- non-positive training settings: refused by the parser, nothing written -----------------------


@pytest.mark.parametrize("task", ["nsmc", "ynat"])
@pytest.mark.parametrize("option, value", [("--epochs", "0"), ("--epochs", "-1"), ("--batch-size", "0"),
                                           ("--max-length", "0"), ("--lr", "0"), ("--lr", "-0.1"), ("--lr", "nan")])
def test_non_positive_training_settings_are_refused_before_anything_is_written(tmp_path, capsys, task, option, value):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit:
        main(["finetune", task, "--checkpoint", str(tmp_path / "ck"), "--out", str(out), option, value])
    assert exit.value.code == 2
    assert f"argument {option}: expected a positive" in capsys.readouterr().err
    assert not out.exists()


# --- kobert eval on an export of another head -----------------------------------------------------


@pytest.fixture(scope="module")
def ner_export(tmp_path_factory):
    checkpoint = init_checkpoint(preset("tiny").with_head("token_classification", 3),
                                 tmp_path_factory.mktemp("ck") / "ck", seed=5)
    out = tmp_path_factory.mktemp("export") / "export"
    assert main(["--quiet", "export", str(checkpoint), "--to", "onnx", "--tokenizer", str(shipped("tokenizer")),
                 "--out", str(out)]) == 0
    return out


def test_eval_on_an_export_of_another_head_says_so_in_one_line(ner_export, tmp_path, capsys):
    nsmc = tmp_path / "nsmc"
    nsmc.mkdir()
    for name in datasets.NSMC_FILES.values():
        (nsmc / name).write_text(NSMC_HEADER + "1\t좋다\t1\n2\t별로\t0\n", encoding="utf-8")
    assert main(["--quiet", "eval", "nsmc", str(ner_export), "--nsmc-dir", str(nsmc)]) == 2
    assert f"{ner_export}: nsmc needs a sequence_classification head; this model has 'token_classification'" in \
        one_line_error(capsys, "eval")
    # Said before any data is looked for.
    assert main(["--quiet", "eval", "qa", str(ner_export), "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "qa needs a question_answering head" in one_line_error(capsys, "eval")


# --- kobert export on a full disk: one line, nothing left -----------------------------------------


class ResourceExhaustedError(Exception):
    """What TensorFlow raises when a file write finds the disk full (its message, not its type, matters)."""


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _safetensors_full(*args, **kwargs):
    from safetensors import SafetensorError

    raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                          'message: "No space left on device" })')


def _tensorflow_full(*args, **kwargs):
    raise ResourceExhaustedError("/tmp/x/tf/variables/variables.data-00000-of-00001.tempstate; No space left on device")


@pytest.mark.parametrize("step, module, name, failure, what", [
    ("staging", "kobert.staging.tempfile", "mkdtemp", _no_space, "cannot create the export there"),
    ("reference", "safetensors.numpy", "save_file", _safetensors_full, "while writing the reference checkpoint"),
    ("tokenizer", "kobert.export", "_write_tokenizer", _no_space, "while writing the tokenizer"),
    ("artifact", "kobert.exporters.onnx", "export", _tensorflow_full, "while writing the onnx artifact"),
    ("manifest", "kobert.export", "write_json", _no_space, "while writing manifest.json"),
])
def test_export_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, step, module, name,
                                                              failure, what):
    checkpoint = init_checkpoint(preset("tiny").with_head("sequence_classification", 2), tmp_path / "ck", seed=1)
    monkeypatch.setattr(f"{module}.{name}", failure)
    parent = tmp_path / "disk"
    parent.mkdir()
    assert main(["--quiet", "export", str(checkpoint), "--to", "onnx", "--tokenizer", str(shipped("tokenizer")),
                 "--out", str(parent / "export")]) == 2
    error = one_line_error(capsys, "export")
    assert what in error and "no space left on device" in error.lower(), error
    assert list(parent.iterdir()) == []
