#!/usr/bin/env bash
# lighteval for the MCF prompt comparison (tests/test_eval_mcf.py, benchmarks/bench_lighteval_mmlu.py).
# A plain `pip install lighteval` (0.13.0) would pull ~80 packages and downgrade fsspec and python-dateutil
# in the pgscore environment (torch/transformers/datasets/trl stay), so only what importing its prompt
# templates needs is installed, without dependencies: lighteval itself and pytablewriter's small chain.
# Run inside the active pgscore environment (after scripts/install.sh).
set -euo pipefail
python -m pip install --quiet --no-deps "lighteval==0.13.0" \
  "pytablewriter==1.2.1" "DataProperty==1.1.1" "mbstrdecoder==1.1.5" "typepy==1.3.5" "tabledata==1.3.5" \
  "tcolorpy==0.1.7" "pathvalidate==3.3.1" "chardet==6.0.0.post1" "pytz" "six"
python - <<'PY'
from lighteval.tasks.templates.multichoice import get_mcq_prompt_function  # noqa: F401
from lighteval.tasks.templates.utils.formulation import MCFFormulation  # noqa: F401
from lighteval.models.abstract_model import LightevalModel  # noqa: F401
from lighteval.utils.language import Language  # noqa: F401
print("lighteval prompt templates importable")
PY
