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
