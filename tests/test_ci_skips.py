"""With CI=true, a test that skips for a missing dependency fails (the root conftest's hook); other skips stay."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

MISSING = '''
import pytest

def test_function_level():
    pytest.importorskip("kobert_no_such_module")

def test_named_install_step():
    pytest.skip("no MXNet interpreter (bash ci/setup.sh creates .venv-mxnet)")

def test_custom_reason():
    pytest.importorskip("kobert_no_such_module", reason="tensorflow-text not installed")
'''
OTHER = '''
import pytest

def test_shared_data():
    pytest.skip("../shared/data/nsmc: shared data not available")

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False

def test_passes():
    pass
'''
MODULE_LEVEL = 'import pytest\nnp = pytest.importorskip("kobert_no_such_module")\n\ndef test_never(): pass\n'


@pytest.fixture
def scratch(pytester):
    pytester.makeconftest((ROOT / "conftest.py").read_text())
    pytester.makepyfile(test_missing=MISSING, test_other=OTHER, test_module_level=MODULE_LEVEL)
    return pytester


def test_without_ci_a_missing_dependency_skips(scratch, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    scratch.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1, skipped=5, xfailed=1)


def test_with_ci_a_missing_dependency_fails_and_other_skips_stay(scratch, monkeypatch):
    monkeypatch.setenv("CI", "true")
    # A module-level one is a collection error, which (like any) stops the run unless told to go on.
    result = scratch.runpytest("-p", "no:cacheprovider", "--continue-on-collection-errors")
    result.assert_outcomes(passed=1, failed=3, skipped=1, xfailed=1, errors=1)
    result.stdout.fnmatch_lines(["*CI=true: a missing dependency fails instead of skipping: could not import*",
                                    "*test_named_install_step*bash ci/setup.sh creates .venv-mxnet*"])
