"""`kobert run --input` under hostile input: memory bounded by the model, not the line; a bad line loses nothing.

Each test drives the real command (`kobert.cli.main`, or a subprocess where memory is measured) on a
tiny exported classifier, and checks what a user sees: rows on stdout, one-line messages, exit codes.
"""

import json
import subprocess
import sys

import pytest

from kobert.checkpoint import init_checkpoint, shipped
from kobert.cli import LINE_CHARS_PER_TOKEN, main
from kobert.config import preset


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    checkpoint = init_checkpoint(preset("tiny").with_head("sequence_classification", 2),
                                 tmp_path_factory.mktemp("ck") / "ck", seed=3)
    out = tmp_path_factory.mktemp("export") / "export"
    assert main(["--quiet", "export", str(checkpoint), "--to", "onnx", "--tokenizer", str(shipped("tokenizer")),
                 "--out", str(out)]) == 0
    return out


def run(exported, *options) -> list[str]:
    return ["--quiet", "run", str(exported), "--runtime", "onnx", "--output", "labels", *map(str, options)]


def rows_and_err(capsys) -> tuple[list[dict], list[str]]:
    captured = capsys.readouterr()
    return [json.loads(line) for line in captured.out.splitlines()], captured.err.strip().splitlines()


def test_dev_zero_ends_in_one_line_with_bounded_memory(exported):
    # Measured in a fresh parent, so RUSAGE_CHILDREN's peak is this one child's alone.
    measure = ("import resource, subprocess, sys; "
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=300); "
               "print(p.returncode); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
               "print(p.stdout + p.stderr, end='')")
    command = [sys.executable, "-m", "kobert.cli", "--quiet", "run", str(exported), "--runtime", "onnx",
               "--input", "/dev/zero"]
    result = subprocess.run([sys.executable, "-c", measure, *command], capture_output=True, text=True, timeout=330)
    code, peak_kib, *output = result.stdout.splitlines()
    assert code == "2" and output == [
        "kobert run: error: /dev/zero:1: no line end within 64 MiB (not a text file?); stopped there"], result
    print(f"kobert run --input /dev/zero: peak RSS {int(peak_kib) / 1024:.0f} MiB")
    assert int(peak_kib) < 1024 * 1024, f"peak RSS {peak_kib} KiB"


def test_a_long_line_is_cut_at_the_cap_with_a_warning_naming_it(exported, tmp_path, capsys):
    cap = 512 * LINE_CHARS_PER_TOKEN  # the tiny preset's 512 positions
    path = tmp_path / "long.txt"
    lines = ["좋다", "가" * (3 * cap), "a" * (cap + 5), "별로"]  # 9x the cap in bytes; just over it in characters
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(run(exported, "--input", path)) == 0
    rows, err = rows_and_err(capsys)
    assert [r["text"] for r in rows] == ["좋다", "가" * cap, "a" * cap, "별로"]
    assert err == [f"kobert run: warning: {path}:{n}: longer than {cap:,} characters; only the first {cap:,} are used"
                   for n in (2, 3)]


def test_a_bad_line_loses_no_good_row_before_it(exported, tmp_path, capsys):
    # Batch 4: windows of 128 lines; the bad line is the 22nd of the second window.
    path = tmp_path / "reviews.txt"
    path.write_bytes(b"".join(f"review {i}\n".encode() for i in range(1, 150)) + b"broken \xff\n" + b"after\n")
    assert main(run(exported, "--batch-size", 4, "--input", path)) == 2
    rows, err = rows_and_err(capsys)
    assert [r["text"] for r in rows] == [f"review {i}" for i in range(1, 150)]
    assert err == [f"kobert run: error: {path}:150: not valid UTF-8 (byte 8 of the line)"]


def test_on_error_skip_writes_an_error_row_in_place_and_goes_on(exported, tmp_path, capsys):
    path = tmp_path / "reviews.txt"
    path.write_bytes("좋다\n".encode() + b"broken \xff\n" + "별로\n".encode())
    assert main(run(exported, "--on-error", "skip", "--input", path, "최고", "bad \udc80")) == 0
    rows, err = rows_and_err(capsys)
    assert [r.get("text") for r in rows] == ["최고", None, "좋다", None, "별로"]
    assert set(rows[1]) == {"error", "argument"} and rows[1]["argument"] == 1
    assert rows[1]["error"].startswith("text 1: not valid Unicode")
    assert rows[3] == {"error": f"{path}:2: not valid UTF-8 (byte 8 of the line)", "line": 2}
    assert err == ["kobert run: warning: 2 line(s) gave an error row instead of output (--on-error skip)"]


def test_a_line_the_model_refuses_is_found_inside_its_window(exported, tmp_path, capsys, monkeypatch):
    from kobert import cli

    real_rows = cli.run_rows

    def refuses_one(runtime, texts, *args, **kwargs):
        if "폭탄" in texts:
            raise ValueError("this text is refused")
        return real_rows(runtime, texts, *args, **kwargs)

    monkeypatch.setattr(cli, "run_rows", refuses_one)
    path = tmp_path / "reviews.txt"
    path.write_text("좋다\n폭탄\n별로\n", encoding="utf-8")
    assert main(run(exported, "--input", path)) == 2
    rows, err = rows_and_err(capsys)
    assert [r["text"] for r in rows] == ["좋다"]
    assert err == [f"kobert run: error: {path}:2: this text is refused"]
    assert main(run(exported, "--on-error", "skip", "--input", path)) == 0
    rows, _ = rows_and_err(capsys)
    assert [r.get("text", r.get("error")) for r in rows] == ["좋다", f"{path}:2: this text is refused", "별로"]
