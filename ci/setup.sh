#!/usr/bin/env bash
# Create the three environments and install everything (idempotent).
#   .venv        the main stack: torch 2.13 (CPU), transformers, tokenizers, sentencepiece, safetensors,
#                huggingface_hub, tensorflow-cpu 2.21, tf2onnx, onnx, onnxruntime, pyspark, and kobert itself
#   .venv-mxnet  the legacy serving stack: mxnet 1.9.1 with numpy<2 (MXNet does not import with numpy 2),
#                Multi Model Server 1.1.11 + model-archiver 1.0.3 + tokenizers (and Java 17 from the OS)
#   .venv-hf4    transformers 4.57 (what Optimum still requires, and the last with a question-answering
#                pipeline), torch 2.13 CPU, optimum-onnx, tokenizers, sentencepiece: clients that know
#                nothing of kobert (tests/test_tokenizer_hf4.py, tests/test_hf_onnx.py)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1

# `pip_install PYTHON ARGS...`: pip install -q into PYTHON's environment; any install error stops setup
# (a failed install must not become skipped tests). The machine's "Location ... is ignored" warnings are dropped.
pip_install() {
  local python=$1
  shift
  "$python" -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; } \
    || { echo "ci/setup.sh: $python -m pip install $* failed" >&2; exit 1; }
}

if [ ! -x .venv/bin/python ]; then "$PYTHON" -m venv .venv; fi
# torch's CPU build first, so that `.[all]` (torch>=2.6) keeps it rather than pulling a multi-GB CUDA build:
# here pip finds torch-2.13.0+cpu in the machine's wheel directory (pip config: find-links); elsewhere add
# --index-url https://download.pytorch.org/whl/cpu (docs/install.md).
pip_install .venv/bin/python "torch==2.13.0"
# spark: pyspark for kobert.spark / `kobert bulk` (tests/test_spark.py; Java 17 is installed below for MMS).
pip_install .venv/bin/python -e ".[all,spark]"
.venv/bin/python -c "import kobert, torch, transformers, tensorflow, onnxruntime, tf2onnx, pyspark" 2>/dev/null \
  || { echo "ci/setup.sh: the main environment (.venv) failed to install" >&2; exit 1; }

# tensorflow-text (the tf-text target's in-graph SentencePiece) requires the `tensorflow` package, which
# would be installed beside tensorflow-cpu (the same module twice): so no dependencies, tensorflow-cpu has them.
pip_install .venv/bin/python --no-deps "tensorflow-text==2.21.1"
.venv/bin/python -c "import tensorflow_text" 2>/dev/null \
  || { echo "ci/setup.sh: tensorflow-text failed to install into .venv" >&2; exit 1; }
# keras-hub (the keras target: KerasHub layers, tokenizer and classifier) requires tensorflow-text, which would
# bring `tensorflow` beside tensorflow-cpu again: so keras-hub without dependencies, then the ones it imports
# (keras 3 comes with tensorflow-cpu; kagglehub, regex, rich and tokenizers are pure pip installs).
pip_install .venv/bin/python --no-deps "keras-hub==0.32.*"
pip_install .venv/bin/python "keras>=3.15" kagglehub regex rich tokenizers
.venv/bin/python -c "import keras_hub" 2>/dev/null \
  || { echo "ci/setup.sh: keras-hub failed to install into .venv" >&2; exit 1; }

if [ ! -x .venv-mxnet/bin/python ]; then "$PYTHON" -m venv .venv-mxnet; fi
# The MXNet pins are said once, in kobert/mxnet_env.py (also read by `kobert setup-mxnet`).
MXNET_PIN=$(.venv/bin/python -c "from kobert.mxnet_env import MXNET_PIN; print(MXNET_PIN)")
NUMPY_PIN=$(.venv/bin/python -c "from kobert.mxnet_env import NUMPY_PIN; print(NUMPY_PIN)")
pip_install .venv-mxnet/bin/python "$MXNET_PIN" "$NUMPY_PIN"
.venv-mxnet/bin/python -c "import mxnet" \
  || { echo "ci/setup.sh: the MXNet environment (.venv-mxnet) failed to install" >&2; exit 1; }
# Multi Model Server for `kobert package mms` archives (tests/test_mms.py), into .venv-mxnet:
# MMS 1.1.11 and model-archiver 1.0.3 with their pure-python dependencies pinned and numpy held
# at $NUMPY_PIN; tokenizers (the handler reads tokenizer.json) without huggingface_hub, which only
# from_pretrained needs; Java 17 for the MMS frontend, from the OS when `java` is missing.
pip_install .venv-mxnet/bin/python "multi-model-server==1.1.11" "model-archiver==1.0.3" "future==1.0.0" \
  "enum-compat==0.0.3" "Pillow==13.0.0" "psutil==7.2.2" "$NUMPY_PIN"
pip_install .venv-mxnet/bin/python --no-deps "tokenizers==0.23.3"
if ! command -v java >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openjdk-17-jre-headless
fi
.venv-mxnet/bin/python -s -c "import mms, model_archiver, tokenizers, numpy; assert numpy.__version__ == '${NUMPY_PIN#numpy==}'" \
  && java -version >/dev/null 2>&1 \
  || { echo "ci/setup.sh: Multi Model Server (.venv-mxnet) or Java 17 failed to install" >&2; exit 1; }

if [ ! -x .venv-hf4/bin/python ]; then "$PYTHON" -m venv .venv-hf4; fi
pip_install .venv-hf4/bin/python "torch==2.13.0" "transformers==4.57.6" "optimum==2.1.0" \
  "optimum-onnx[onnxruntime]==0.1.0" "onnxruntime==1.32.0" tokenizers sentencepiece
.venv-hf4/bin/python -c "import transformers, tokenizers, sentencepiece, optimum.onnxruntime" \
  || { echo "ci/setup.sh: the transformers 4 environment (.venv-hf4) failed to install" >&2; exit 1; }

# --- Deploy where users run (hf-onnx, kobert package web): transformers.js, Chromium ---------------------
# Headless Chromium drives the web page in tests/test_web.py; Noto CJK renders its Korean; Node runs
# transformers.js (the machine image brings Node 20; Debian's nodejs is the fallback).
missing_debs=()
for deb in chromium fonts-noto-cjk; do dpkg -s "$deb" >/dev/null 2>&1 || missing_debs+=("$deb"); done
command -v npm >/dev/null 2>&1 || missing_debs+=(nodejs npm)
if [ ${#missing_debs[@]} -gt 0 ]; then
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing_debs[@]}" >/dev/null \
    || { echo "ci/setup.sh: apt-get install ${missing_debs[*]} failed" >&2; exit 1; }
fi
# web/node_modules: transformers.js, onnxruntime-web/-node, puppeteer-core, pinned by web/package-lock.json.
# onnxruntime-node's install script fetches extra (CUDA) binaries from outside the npm registry; its CPU
# binaries ship in the package, so the script is skipped. Reinstalled only when the lock file changes.
lock_stamp=web/node_modules/.kobert-lock-sha256
if [ "$(cat "$lock_stamp" 2>/dev/null)" != "$(sha256sum web/package-lock.json | cut -d' ' -f1)" ]; then
  (cd web && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error) \
    || { echo "ci/setup.sh: npm ci in web/ failed" >&2; exit 1; }
  sha256sum web/package-lock.json | cut -d' ' -f1 > "$lock_stamp"
fi

# benchmarks/throughput.py's reference row: sentence-transformers (6.2.0 works with transformers 5).
.venv/bin/python -c "import sentence_transformers" 2>/dev/null \
  || pip_install .venv/bin/python -e ".[bench]"

# The docs site (tests/test_docs.py runs `mkdocs build --strict`): mkdocs and Material, pinned in the docs extra.
.venv/bin/python -c "import mkdocs, material" 2>/dev/null \
  || pip_install .venv/bin/python -e ".[docs]"

# Independent references for the task metrics (tests/test_task_metrics.py): seqeval's sdist builds only as PEP 517.
pip_install .venv/bin/python --use-pep517 "seqeval==1.2.2" "scipy==1.17.1" "scikit-learn==1.9.1"

echo "ci/setup.sh: .venv, .venv-mxnet, .venv-hf4, web/node_modules and Chromium ready"
