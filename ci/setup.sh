#!/usr/bin/env bash
# Create both environments and install everything (idempotent).
#   .venv        the main stack: torch 2.13 (CPU), transformers, tokenizers, sentencepiece, safetensors,
#                huggingface_hub, tensorflow-cpu 2.21, tf2onnx, onnx, onnxruntime, and kobert itself
#   .venv-mxnet  the legacy serving stack: mxnet 1.9.1 with numpy<2 (MXNet does not import with numpy 2)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x .venv/bin/python ]; then "$PYTHON" -m venv .venv; fi
# torch is pinned to the CPU build; the pin keeps pip from pulling a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -e ".[all]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import kobert, torch, transformers, tensorflow, onnxruntime, tf2onnx" 2>/dev/null \
  || { echo "ci/setup.sh: the main environment (.venv) failed to install" >&2; exit 1; }

if [ ! -x .venv-mxnet/bin/python ]; then "$PYTHON" -m venv .venv-mxnet; fi
.venv-mxnet/bin/python -m pip install -q "mxnet==1.9.1" "numpy==1.23.5" 2>&1 | grep -v "^WARNING: Location" || true
.venv-mxnet/bin/python -c "import mxnet" \
  || { echo "ci/setup.sh: the MXNet environment (.venv-mxnet) failed to install" >&2; exit 1; }
# benchmarks/throughput.py's reference row: sentence-transformers (6.2.0 works with transformers 5).
.venv/bin/python -c "import sentence_transformers" 2>/dev/null \
  || .venv/bin/python -m pip install -q -e ".[bench]" 2>&1 | grep -v "^WARNING: Location" || true

echo "ci/setup.sh: .venv and .venv-mxnet ready"
