#!/usr/bin/env bash
# The test command (README "Tests"; .ci/run calls it): builds both environments from scratch, runs both suites.
#   .venv       pgscore[all] + lighteval's prompt functions  -> the main suite
#   .venv-vllm  vLLM's CPU build + pgscore (install_vllm.sh)  -> tests/test_vllm_backend.py, tests/test_vllm_server.py
#               (vLLM offline engine and its OpenAI-compatible server on 127.0.0.1), with no skips allowed.
# Ends with the vLLM run's pytest summary line; exits non-zero if either run failed.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
bash scripts/install.sh
bash scripts/install_lighteval.sh   # lighteval's own prompt functions, for the MCF equality tests

# 1. the main suite, in the main environment (the vLLM-only modules run in step 2)
main_rc=0
python -m pytest -q --ignore=tests/test_vllm_backend.py --ignore=tests/test_vllm_server.py || main_rc=$?
deactivate

# 2. vLLM's CPU build in its own exactly pinned environment
t=$(date +%s)
bash scripts/install_vllm.sh
echo "test: vLLM environment built in $(( $(date +%s) - t )) s; main suite exit code $main_rc"
vllm_rc=0
junit="$(mktemp -d)/pgscore-vllm-junit.xml"
PGSCORE_REQUIRE_VLLM=1 VLLM_LOGGING_LEVEL=WARNING .venv-vllm/bin/python -m pytest -q -p no:cacheprovider \
  --junitxml="$junit" tests/test_vllm_backend.py tests/test_vllm_server.py || vllm_rc=$?
if [ "$vllm_rc" -eq 0 ] && grep -q "<skipped" "$junit"; then
  echo "test: vLLM tests were skipped on a machine that runs them: failing"; exit 1
fi
[ "$main_rc" -eq 0 ] && [ "$vllm_rc" -eq 0 ]
