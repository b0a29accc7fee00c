"""The LM head for a few rows: ``F.linear`` vs ``pgscore/models/head.py``'s vocabulary slices.

Run: ``python benchmarks/bench_head.py [--rows 12] [--repeats 3]``.

1. **Per row count**, on each embedded model's real output embedding (float32, loaded as ``pgscore run``
   loads it): the median of 9 products of ``rows`` random hidden states, both ways in one process, and
   whether every logit is bit-identical.
2. **Real decoding**: each teacher's first ``--rows`` quickstart synthesis rows (rendered from the seed stage,
   as ``benchmarks/bench_decoding.py`` does) through the backend's decoding loop with the slices off and on,
   in turn (A B A B ...), same seed; the median seconds, the paired ratios, and whether both generated the
   same token ids.

Writes ``benchmarks/results/head.json``. Only float32 takes the sliced path (``PGSCORE_CPU_DTYPE=float32`` is
set here so that a CPU with native bf16 measures it too).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("PGSCORE_CPU_DTYPE", "float32")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))


def per_row_counts(lm, counts) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from pgscore.models.head import head_linear

    w = lm.model.get_output_embeddings().weight.detach()
    g = torch.Generator().manual_seed(0)
    out = []
    with torch.inference_mode():
        for rows in counts:
            x = torch.randn(rows, w.shape[1], generator=g)
            times = {"f_linear": [], "sliced": []}
            for _ in range(9):  # alternate, so drift hits both alike
                for name, fn in (("f_linear", lambda: F.linear(x, w)), ("sliced", lambda: head_linear(x, w))):
                    t = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t)
            med = {k: statistics.median(v[1:]) * 1e3 for k, v in times.items()}
            out.append({"rows": rows, "f_linear_ms": round(med["f_linear"], 2), "sliced_ms": round(med["sliced"], 2),
                        "speedup": round(med["f_linear"] / med["sliced"], 2),
                        "bit_identical": bool(torch.equal(F.linear(x, w), head_linear(x, w)))})
    return out


def real_decoding(teacher_name: str, n_rows: int, repeats: int) -> tuple[object, dict]:
    from bench_decoding import encoded_rows, teacher_inputs

    from pgscore.models import load_model
    from pgscore.models.head import ENV

    exp, teacher, plan, seed_df, pool, params, schema = teacher_inputs(ROOT / "examples" / "quickstart.yaml",
                                                                       teacher_name)
    lm = load_model(teacher.model)
    encoded, per_row = encoded_rows(exp, lm, plan, seed_df, pool, params, schema, limit=n_rows)
    rows = [ids for ids, _, _ in encoded]

    def run(on: bool):
        os.environ[ENV] = "1" if on else "0"
        t = time.perf_counter()
        gens = lm._generate(rows, per_row, ())
        return time.perf_counter() - t, [g.text for g in gens], sum(g.completion_tokens for g in gens)

    run(True)  # warm-up: grammar compilation, allocator
    secs = {False: [], True: []}
    texts = {}
    for _ in range(repeats):
        for on in (False, True):
            s, txt, n_tok = run(on)
            secs[on].append(s)
            texts[on] = txt
    os.environ.pop(ENV, None)
    res = {"teacher": teacher.name, "rows": len(rows), "max_tokens": params.max_tokens, "generated_tokens": n_tok,
           "f_linear_s": round(statistics.median(secs[False]), 2), "sliced_s": round(statistics.median(secs[True]), 2),
           "paired_ratios": [round(a / b, 3) for a, b in zip(secs[False], secs[True])],
           "same_texts": texts[False] == texts[True]}
    return lm, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=12, help="synthesis rows per teacher (the preview's 2 x 2 x 3)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch

    out = {"threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "models": []}
    for teacher in ("gemma3-270m", "smollm2-135m"):
        lm, dec = real_decoding(teacher, args.rows, args.repeats)
        entry = {"model": teacher, "vocab": lm.model.get_output_embeddings().weight.shape[0],
                 "per_row_count": per_row_counts(lm, (1, 2, 4, 8, 12, 15, 16, 24)), "decoding": dec}
        out["models"].append(entry)
        print(json.dumps(entry, indent=1), flush=True)
        lm.close()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "head.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
