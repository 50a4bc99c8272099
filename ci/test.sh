#!/usr/bin/env bash
# The whole test suite (README command 2). Slow, model-scale cases are marked `slow` and run too.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest -q "$@"
