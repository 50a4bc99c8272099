"""ci/fast_tier.py: the fast tier keeps each file's cheapest test and the cheapest others within budget."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fast_tier():
    spec = importlib.util.spec_from_file_location("fast_tier", ROOT / "ci" / "fast_tier.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOG = """
============================= slowest durations =============================
30.00s setup    tests/test_a.py::test_export[onnx]
2.00s call     tests/test_a.py::test_export[onnx]
1.00s call     tests/test_a.py::test_small
20.00s call     tests/test_b.py::test_only
40.00s call     tests/test_c.py::test_heavy
5.00s call     tests/test_c.py::test_light
"""


def test_costs_add_setup_call_and_teardown_and_take_the_most_of_several_logs():
    fast_tier = _fast_tier()
    costs = fast_tier.test_costs(LOG)
    assert costs["tests/test_a.py::test_export[onnx]"] == 32.0
    later = "3.00s call     tests/test_a.py::test_small\n0.50s call     tests/test_c.py::test_light\n"
    most = fast_tier.most_costs([LOG, later])
    assert most["tests/test_a.py::test_small"] == 3.0 and most["tests/test_c.py::test_light"] == 5.0


def test_each_file_keeps_its_cheapest_test_unless_even_that_is_slow_then_cheapest_first():
    fast_tier = _fast_tier()
    fast = fast_tier.fast_set(fast_tier.test_costs(LOG), budget=10.0)
    # test_a and test_c keep their cheapest; test_b's only test costs over the 15 s floor
    assert fast == {"tests/test_a.py::test_small", "tests/test_c.py::test_light"}
    fast = fast_tier.fast_set(fast_tier.test_costs(LOG), budget=40.0)
    assert "tests/test_b.py::test_only" in fast and "tests/test_c.py::test_heavy" not in fast


def test_fast_leaves_out_exactly_the_listed_tests(pytester):
    pytester.makeconftest((ROOT / "conftest.py").read_text().replace(
        '__import__("pathlib").Path(__file__).parent / "ci" / "slow-tests.txt"',
        '__import__("pathlib").Path(__file__).parent / "slow-tests.txt"'))
    pytester.makepyfile(test_x="def test_quick(): pass\ndef test_slow(): pass\n")
    (pytester.path / "slow-tests.txt").write_text("# comment\ntest_x.py::test_slow\n")
    pytester.runpytest("--fast").assert_outcomes(passed=1, deselected=1)
    pytester.runpytest().assert_outcomes(passed=2)


SHARED_EXPORT = '''
import pytest

BUILT = []
ARTIFACTS = ["onnx", "tf", "mxnet"]


@pytest.fixture(scope="module")
def export(request, artifacts_to_build):
    BUILT.append(artifacts_to_build(request, ARTIFACTS))


@pytest.mark.parametrize("artifact", ARTIFACTS + [None])
def test_open(export, artifact):
    pass


def test_reads_the_reference(export):
    pass


@pytest.mark.every_artifact
def test_compares_all(export):
    pass


def test_built():
    print("BUILT", BUILT)
'''


def test_a_shared_export_builds_only_the_artifacts_the_selected_tests_open(pytester):
    pytester.makeconftest((ROOT / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    every_artifact: opens every artifact\n")
    pytester.makepyfile(test_x=SHARED_EXPORT)
    built = {}
    for selection in ("mxnet or built", "reference or built", "all or built", "open or built"):
        result = pytester.runpytest("-s", "-k", selection)
        built[selection] = next(line for line in result.outlines if "BUILT" in line)
    assert built["mxnet or built"].endswith("BUILT [['onnx', 'mxnet']]")  # the first artifact is always built
    assert built["reference or built"].endswith("BUILT [['onnx']]")
    assert built["all or built"].endswith("BUILT [['onnx', 'tf', 'mxnet']]")
    assert built["open or built"].endswith("BUILT [['onnx', 'tf', 'mxnet']]")
