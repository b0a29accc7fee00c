"""What loading an embedded model costs before its first token, and what the two load caches save.

Run: ``python benchmarks/bench_load.py [--repeats 3] [--out benchmarks/results/load.json]``.

Two figures per embedded model (Gemma 3 270M, SmolLM2-135M), each timed against its baseline in the same
process, alternating, best of ``--repeats``:

- ``tokenizer``: ``AutoTokenizer.from_pretrained`` on the converted folder (transformers 5 parses
  ``tokenizer.json`` in Python, then builds the Rust tokenizer) against ``local._pickled_tokenizer`` (the
  pickle ``load_tokenizer`` writes to ``cache_dir()/tokenizers``). Both must encode a sample text alike.
- ``weights``: ``from_pretrained(dtype=bfloat16)`` plus one forward pass of one token (the forward pass
  reads every weight: a bfloat16 file is memory-mapped and read lazily) from the float32 converted folder
  (cast at load) against its bfloat16 copy (``tiny.half_copy``), both with the file's pages dropped from
  the page cache first (``posix_fadvise(DONTNEED)``: a machine that has not read the file lately, as the
  first stage of a run sees it) and warm (read just before). The two models must be bit for bit equal.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLE = "Wie viele Äpfel hat Anna? こんにちは、世界。<start_of_turn>user\nHello<end_of_turn>\n" * 4


def drop_page_cache(path: Path) -> None:
    """Ask the kernel to forget the file's clean pages (the next read comes from disk)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS / "load.json"))
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pgscore.models import local
    from pgscore.models.base import ModelSpec
    from pgscore.models.hf_source import resolve_source
    from pgscore.models.tiny import half_copy

    out: dict = {"torch_threads": torch.get_num_threads(), "repeats": args.repeats, "models": {}}
    for name in ("gemma3-270m", "smollm2-135m"):
        folder = Path(resolve_source(ModelSpec(backend="tiny", model=name))[0])
        half = half_copy(folder, "bfloat16")
        row: dict = {"folder_float32_bytes": (folder / "model.safetensors").stat().st_size,
                     "folder_bfloat16_bytes": (half / "model.safetensors").stat().st_size}

        parsed = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        local._pickle_tokenizer(folder, parsed)
        pickled = local._pickled_tokenizer(folder)
        assert pickled is not None and pickled(SAMPLE)["input_ids"] == parsed(SAMPLE)["input_ids"]
        t_parse, t_pickle = [], []
        for _ in range(args.repeats):  # alternating, so a drift of the machine hits both
            t_parse.append(seconds(lambda: AutoTokenizer.from_pretrained(folder, local_files_only=True)))
            t_pickle.append(seconds(lambda: local._pickled_tokenizer(folder)))
        row["tokenizer"] = {"parse_s": round(min(t_parse), 3), "pickle_s": round(min(t_pickle), 3),
                            "speedup": round(min(t_parse) / min(t_pickle), 2)}

        ids = torch.tensor([[2, 3]])

        def load(src: Path, cold: bool):
            if cold:
                drop_page_cache(src / "model.safetensors")
            t0 = time.perf_counter()
            m = AutoModelForCausalLM.from_pretrained(src, local_files_only=True, dtype=torch.bfloat16)
            with torch.inference_mode():
                m(input_ids=ids)
            return time.perf_counter() - t0, m

        _, a = load(folder, False)
        _, b = load(half, False)
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), "copy differs"
        del a, b, sa, sb
        for cold in (True, False):
            t32, t16 = [], []
            for _ in range(args.repeats):
                t32.append(load(folder, cold)[0])
                t16.append(load(half, cold)[0])
            row["weights_cold" if cold else "weights_warm"] = {
                "from_float32_s": round(min(t32), 3), "from_bfloat16_copy_s": round(min(t16), 3),
                "speedup": round(min(t32) / min(t16), 2)}
        out["models"][name] = row
        print(name, json.dumps(row))
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
