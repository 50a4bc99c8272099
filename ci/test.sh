#!/usr/bin/env bash
# The whole test suite (README command 2). Slow, model-scale cases are marked `slow` and run too.
# `bash ci/test.sh --fast`: the developer's tier (about 3 minutes on 2 cores), leaving out the tests in
# ci/slow-tests.txt; rewrite that list with `python ci/fast_tier.py FULL_LOG [FAST_LOG...]` (see its doc).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest -q "$@"
