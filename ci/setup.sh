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
# .venv-hf4: transformers 4.57, the reference for `Runtime.answer` (transformers 5 removed the
# question-answering pipeline); parity_tests/test_tasks.py runs it in a subprocess. torch 2.13.0 only:
# that pin takes the CPU wheel, any other version pulls a multi-GB CUDA build.
if [ ! -x .venv-hf4/bin/python ]; then "$PYTHON" -m venv .venv-hf4; fi
.venv-hf4/bin/python -m pip install -q "torch==2.13.0" "transformers==4.57.*" tokenizers sentencepiece numpy \
  2>&1 | grep -v "^WARNING: Location" || true
.venv-hf4/bin/python -c "import torch, transformers; assert transformers.__version__.startswith('4.57.')" \
  || { echo "ci/setup.sh: the transformers 4.57 environment (.venv-hf4) failed to install" >&2; exit 1; }
# Independent references for the task metrics (tests/test_task_metrics.py): seqeval's sdist builds only as PEP 517.
.venv/bin/python -m pip install -q --use-pep517 "seqeval==1.2.2" "scipy==1.17.1" "scikit-learn==1.9.1" \
  2>&1 | grep -v "^WARNING: Location" || true

echo "ci/setup.sh: .venv and .venv-mxnet ready"
