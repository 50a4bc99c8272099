"""Errors that help: one line by default, the full cause in a log file it names and with --verbose,
a missing framework as the pip extra that brings it, and no TensorFlow start-up lines from tf-text."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from kobert import errors, registry
from kobert.cli import main
from kobert.mxnet_env import ENV_VAR

REPO = Path(__file__).resolve().parents[1]
SHIPPED_TOKENIZER = str(REPO / "kobert" / "assets" / "tokenizer")  # so the export warns of nothing
# What a failing MXNet interpreter leaves on stderr; the CLI's one line must not drop where it is.
FAKE_MXNET = """#!/bin/sh
echo 'Traceback (most recent call last):' >&2
echo '  File "gluon_export.py", line 7, in <module>' >&2
echo 'KOBERT-FAKE-CAUSE: np.PZERO was removed' >&2
exit 1
"""


def error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"kobert {command}: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def details(line: str) -> Path:
    assert line.endswith(")") and " (details: " in line, line
    return Path(line.rsplit(" (details: ", 1)[1][:-1])


def test_a_missing_framework_names_its_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KOBERT_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails as if not installed
    monkeypatch.delitem(sys.modules, "kobert.runtimes.onnx", raising=False)
    assert main(["--quiet", "run", str(tmp_path), "--runtime", "onnx", "정말 재밌어요"]) == 2
    line = error_line(capsys, "run")
    assert "onnxruntime is not installed: this needs the 'onnx' extra: pip install 'kobert[onnx]'" in line
    assert "ModuleNotFoundError" in details(line).read_text()


def test_each_framework_extra_is_declared():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for module, extra in errors.FRAMEWORK_EXTRAS.items():
        assert extra in extras, (module, extra)
    for spec in registry.RUNTIMES.values():
        assert spec.extra in extras, (spec.name, spec.extra)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    pytest.importorskip("torch")
    from kobert.checkpoint import init_checkpoint
    from kobert.config import preset

    return init_checkpoint(preset("tiny").with_head("sequence_classification", 2),
                           tmp_path_factory.mktemp("ck") / "ck", seed=3)


@pytest.mark.parametrize("verbose", [False, True])
def test_a_subprocess_failure_is_one_line_with_its_stderr_in_the_log(tiny_checkpoint, tmp_path, capsys, monkeypatch,
                                                                     verbose):
    fake = tmp_path / "python"
    fake.write_text(FAKE_MXNET)
    fake.chmod(0o755)
    monkeypatch.setenv(ENV_VAR, str(fake))
    monkeypatch.setenv("KOBERT_LOG_DIR", str(tmp_path / "logs"))
    argv = ["export", str(tiny_checkpoint), "--to", "mxnet", "--out", str(tmp_path / "exp"), "--tokenizer", SHIPPED_TOKENIZER]
    assert main(["--quiet", *argv, *(["--verbose"] if verbose else [])]) == 2
    err = capsys.readouterr().err.strip()
    line = err.splitlines()[-1]
    assert line.startswith("kobert export: error: MXNet export failed (exit code 1): KOBERT-FAKE-CAUSE"), err
    log = details(line)
    assert log.parent == tmp_path / "logs"
    assert "KOBERT-FAKE-CAUSE" in log.read_text() and "MXNetExportError" in log.read_text()
    assert 'File "gluon_export.py", line 7' in log.read_text()  # the subprocess's whole stderr
    if verbose:  # the full cause on stderr too
        assert 'File "gluon_export.py", line 7' in err and "Traceback" in err
    else:
        assert len(err.splitlines()) == 1


def test_an_unexpected_error_is_one_line_with_its_traceback_in_the_log(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KOBERT_LOG_DIR", str(tmp_path / "logs"))

    def broken_tokenizer(path=None):
        return {}["token_type_ids"]  # the kind of bug issue 21 met (parity.golden_cases)

    monkeypatch.setattr("kobert.tokenizer.get_tokenizer", broken_tokenizer)
    assert main(["tokenize", "안녕"]) == 2
    line = error_line(capsys, "tokenize")
    assert "KeyError: 'token_type_ids'" in line
    assert "in broken_tokenizer" in details(line).read_text()


def test_tf_text_imports_print_no_tensorflow_start_up_lines(tmp_path):
    pytest.importorskip("tensorflow_text", reason="tensorflow-text not installed (ci/setup.sh installs it --no-deps)")
    code = ("from kobert.progress import quiet_frameworks\nquiet_frameworks()\n"
            "import kobert.runtimes.tf_text, kobert.exporters.tf_text\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "ABSL_"))}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "oneDNN" not in proc.stderr and "absl::InitializeLog" not in proc.stderr, proc.stderr
