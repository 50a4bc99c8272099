"""Write ci/slow-tests.txt: the tests `bash ci/test.sh --fast` leaves out.

Input: the output of a full run with `--durations=0` (`bash ci/test.sh --durations=0 | tee LOG`), and
optionally of earlier fast-tier runs (`bash ci/test.sh --fast --durations=0`): a test costs the most
any of the logs measured for it, which charges shared fixtures to the tests that pay them in the tier.
Each test costs its setup + call + teardown. Every test file keeps its cheapest test (so the fast
tier touches every module the suite touches, unless even its cheapest test costs over 15 s); then tests join, cheapest first, while the tier's
measured cost stays under --budget seconds. Everything else is listed as slow. Shared session
fixtures are charged to the first test that used them, so re-measure the fast tier after writing
(`bash ci/test.sh --fast --durations=20`) and lower --budget if it runs over.

    python ci/fast_tier.py FULL_LOG [FAST_LOG...] [--budget 150] [--keep-listed]

--keep-listed also keeps every test the current list names (tests a commit listed by hand as slow, or that no
given log measured): the way to cut a tier that has grown, from a fast run's log alone.

Listed by hand, because a log charges a shared fixture to whichever test pays it first: the parity_tests
runs of every runtime but onnx and torch (each runtime's own test file keeps it in the tier), and the spoke
tests of every head but sequence_classification-2 (one export per head), so their exports stay out.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

DURATION = re.compile(r"^\s*([\d.]+)s\s+(setup|call|teardown)\s+(\S.*?)\s*$")
OUT = Path(__file__).with_name("slow-tests.txt")
FILE_FLOOR_S = 15.0  # a file whose cheapest test costs more than this is left to the full suite


def test_costs(log: str) -> dict[str, float]:
    costs: dict[str, float] = defaultdict(float)
    for line in log.splitlines():
        match = DURATION.match(line)
        if match:
            costs[match.group(3)] += float(match.group(1))
    return dict(costs)


def most_costs(logs: list[str]) -> dict[str, float]:
    costs: dict[str, float] = {}
    for log in logs:
        for nodeid, cost in test_costs(log).items():
            costs[nodeid] = max(cost, costs.get(nodeid, 0.0))
    return costs


def fast_set(costs: dict[str, float], budget: float) -> set[str]:
    by_file: dict[str, list[str]] = defaultdict(list)
    for nodeid in costs:
        by_file[nodeid.split("::")[0]].append(nodeid)
    cheapest = (min(ids, key=costs.get) for ids in by_file.values())
    fast = {nodeid for nodeid in cheapest if costs[nodeid] <= FILE_FLOOR_S}  # a file whose every test is slow stays out
    spent = sum(costs[n] for n in fast)
    for nodeid in sorted(costs, key=costs.get):
        if nodeid not in fast and spent + costs[nodeid] <= budget:
            fast.add(nodeid)
            spent += costs[nodeid]
    return fast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", type=Path, nargs="+", help="a full run's output with --durations=0, then fast runs'")
    parser.add_argument("--budget", type=float, default=150.0, help="seconds of measured test time in the tier")
    parser.add_argument("--keep-listed", action="store_true", help="keep the tests the current list names")
    args = parser.parse_args()
    costs = most_costs([log.read_text() for log in args.logs])
    listed = set()
    if args.keep_listed and OUT.is_file():
        listed = {line.strip() for line in OUT.read_text().splitlines() if line.strip() and not line.startswith("#")}
    fast = fast_set({n: c for n, c in costs.items() if n not in listed}, args.budget)
    slow = sorted((set(costs) | listed) - fast)
    header = f"# written by ci/fast_tier.py from a full run (budget {args.budget:.0f} s); one pytest node id a line\n"
    OUT.write_text(header + "".join(f"{nodeid}\n" for nodeid in slow))
    print(f"{len(fast)} tests in the fast tier ({sum(costs[n] for n in fast):.0f} s measured), "
          f"{len(slow)} left out ({sum(costs.get(n, 0.0) for n in slow):.0f} s measured): {OUT}")


if __name__ == "__main__":
    main()
