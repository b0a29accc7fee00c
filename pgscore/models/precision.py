"""The floating-point type of a local (transformers) model whose spec leaves ``dtype`` unset or ``auto``.

- On a GPU: bfloat16 (what vLLM and the paper's runs use).
- On a CPU with native bfloat16 arithmetic (x86 AVX512-BF16 or AMX, e.g. AMD Zen 4, Intel Sapphire
  Rapids): bfloat16. On the project's 2-core AMD EPYC machines ``benchmarks/bench_precision.py`` measures
  it against float32 in one run: MGSM log-likelihoods 2.41x, the score-only judge 1.88x and a training
  step 1.65x faster, log-probabilities within ~0.05 nats of float32 on average.
- On a CPU without it (most AVX2 laptops): float32. There bfloat16 is emulated: the same benchmark under
  ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`` scored 3.4x *slower* than float32.

``PGSCORE_CPU_DTYPE`` (``float32`` or ``bfloat16``) overrides the CPU choice, e.g. to reproduce a float32
run digit for digit on a bfloat16-capable machine. An explicit ``dtype`` in a spec always wins.

Students follow their base's resolved type: a bfloat16 base on CPU trains with bfloat16 autocast (float32
master weights and optimizer state, as on a GPU) and is evaluated in bfloat16.

The ledger must not hand float32 results to a bfloat16 run: :func:`key_dtype` puts ``"bfloat16"`` into
:meth:`ModelSpec.key` exactly where ``auto`` now means bfloat16 on a CPU. Where ``auto`` means what it
meant before (float32 on CPU, bfloat16 on GPU) the key is unchanged, so older results folders keep their
cached calls.
"""

from __future__ import annotations

import functools
import os
from typing import Any

ENV = "PGSCORE_CPU_DTYPE"
CPU_CHOICES = ("float32", "bfloat16")
TRANSFORMERS_BACKENDS = ("hf", "tiny")  # the specs this module resolves


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True where torch's CPU kernels have bfloat16 dot products in hardware (AVX512-BF16 or AMX)."""
    try:
        import torch
    except ImportError:
        return False
    # kernels held below AVX-512 (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2) emulate bf16 even on
    # hardware that has it: float32 then (bench_precision.py measured 3.4x slower scoring there)
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if "AVX512" not in str(torch.backends.cpu.get_cpu_capability()).upper() or (
            isa and isa != "ALL" and "AVX512" not in isa and "AMX" not in isa):
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in probes:
        fn = getattr(torch.cpu, name, None)
        try:
            if fn is not None and fn():
                return True
        except Exception:  # noqa: BLE001  (a probe that cannot run means no)
            continue
    return False


def cpu_auto_dtype() -> str:
    """``auto`` on CPU: ``PGSCORE_CPU_DTYPE`` if set, else bfloat16 with native support, else float32."""
    forced = os.environ.get(ENV, "").strip().lower()
    if forced:
        if forced not in CPU_CHOICES:
            from pgscore.errors import PgScoreError

            raise PgScoreError(f"{ENV} must be float32 or bfloat16, got {forced!r}")
        return forced
    return "bfloat16" if cpu_has_native_bf16() else "float32"


def spec_device(spec: Any) -> str:
    """The device a local spec runs on: ``options.device``, else cuda when torch sees a GPU, else cpu."""
    dev = (getattr(spec, "options", None) or {}).get("device")
    if dev:
        return str(dev)
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def dtype_name(spec: Any, device: str | None = None) -> str:
    """The dtype a local spec runs in (``auto``/unset resolved for ``device``), as a torch attribute name."""
    if spec.dtype not in (None, "auto"):
        return str(spec.dtype)
    device = device or spec_device(spec)
    return cpu_auto_dtype() if device == "cpu" else "bfloat16"


def key_dtype(spec: Any) -> str | None:
    """What :meth:`ModelSpec.key` records as the dtype: the spec's own, except ``"bfloat16"`` where an
    unset/``auto`` local spec resolves to bfloat16 on a CPU (the one case whose numbers changed)."""
    if spec.dtype not in (None, "auto") or spec.backend not in TRANSFORMERS_BACKENDS:
        return spec.dtype
    return "bfloat16" if spec_device(spec) == "cpu" and dtype_name(spec, "cpu") == "bfloat16" else spec.dtype
