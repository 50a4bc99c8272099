"""Runtime benchmark: every runtime (each in its own process) vs torch eager and the GEMM ceiling.

    python benchmarks/runtime_bench.py [--quick] [--rounds N] [--calls N] [--json FILE]   (= `kobert bench`)

How we measure: see the docstring of kobert/bench/__init__.py.
"""

import sys

from kobert.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
