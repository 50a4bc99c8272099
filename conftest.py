"""Fixtures shared by tests/ and parity_tests/."""

import pytest

pytest_plugins = ["pytester"]  # tests/test_fast_tier.py runs the fast-tier hook in a scratch pytest


@pytest.fixture(scope="session")
def transformers_reference():
    """The independent transformers reference (tests/transformers_reference.py): `.outputs`, `.load`."""
    import transformers_reference

    return transformers_reference


# --- the fast tier: `bash ci/test.sh --fast` ------------------------------------------------------
# The full suite is what CI runs. The fast tier leaves out the tests listed in ci/slow-tests.txt
# (written by ci/fast_tier.py from a full run's --durations=0), so a new test is fast until measured.
SLOW_TESTS = __import__("pathlib").Path(__file__).parent / "ci" / "slow-tests.txt"


def pytest_addoption(parser):
    parser.addoption("--fast", action="store_true", help="leave out the tests in ci/slow-tests.txt")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--fast") or not SLOW_TESTS.exists():
        return
    slow = {line.strip() for line in SLOW_TESTS.read_text().splitlines() if line.strip() and not line.startswith("#")}
    kept = [item for item in items if item.nodeid not in slow]
    config.hook.pytest_deselected(items=[item for item in items if item.nodeid in slow])
    items[:] = kept
