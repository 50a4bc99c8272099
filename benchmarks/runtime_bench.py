"""Runtime benchmark: every runtime vs torch eager, export time, size, memory, tokenizer docs/s.

    python benchmarks/runtime_bench.py [--quick] [--json FILE]     (same as `kobert bench`)

How we measure: see the docstring of kobert/bench.py.
"""

import sys

from kobert.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
