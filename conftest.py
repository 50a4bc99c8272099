"""Fixtures shared by tests/ and parity_tests/."""

import os
import re

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


def artifacts_asked_for(request, artifacts: list[str]) -> list[str]:
    """Of `artifacts`, those the selected tests using this module-scoped export fixture will open.

    A shared export fixture serves tests parametrized over `artifact=`; in the fast tier or under `-k`
    only some of them run, so only their artifacts are built (in the full suite: all). A test without
    that parameter opens the first artifact (or only the export's reference/), unless it is marked
    `every_artifact`.
    """
    asked = {artifacts[0]}
    for item in request.session.items:
        if item.module is not request.module or request.fixturename not in item.fixturenames:
            continue
        if item.get_closest_marker("every_artifact"):
            return list(artifacts)
        asked.add(getattr(getattr(item, "callspec", None), "params", {}).get("artifact"))
    return [a for a in artifacts if a in asked]


@pytest.fixture(scope="session")
def artifacts_to_build():
    """`artifacts_asked_for`, for a module-scoped export fixture to call with its own `request`."""
    return artifacts_asked_for


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--fast") or not SLOW_TESTS.exists():
        return
    slow = {line.strip() for line in SLOW_TESTS.read_text().splitlines() if line.strip() and not line.startswith("#")}
    kept = [item for item in items if item.nodeid not in slow]
    config.hook.pytest_deselected(items=[item for item in items if item.nodeid in slow])
    items[:] = kept


# --- CI=true: a skip for a missing dependency fails ------------------------------------------------
# ci/setup.sh installs every dependency the suite uses, so in CI (.ci/run runs with CI=true) a missing
# one is a failed install and must turn CI red, not pass as a skipped test. Such a skip says so:
# importorskip's "could not import 'x'", "not installed", or the install step that brings it
# (ci/setup.sh, kobert setup-mxnet). Missing shared data or a checkout without a built asset still skip.
MISSING_DEPENDENCY = re.compile(r"could not import '|not installed|ci/setup\.sh|kobert setup-mxnet")


def missing_dependency(report) -> str | None:
    """The skip reason when `report` skipped for a missing dependency and CI is "true"; else None."""
    if os.environ.get("CI", "").lower() != "true" or not report.skipped or hasattr(report, "wasxfail"):
        return None
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    return reason if MISSING_DEPENDENCY.search(reason) else None


def fail_missing_dependency(report):
    reason = missing_dependency(report)
    if reason:
        report.outcome = "failed"
        report.longrepr = f"CI=true: a missing dependency fails instead of skipping: {reason}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    return fail_missing_dependency((yield))


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    return fail_missing_dependency((yield))
