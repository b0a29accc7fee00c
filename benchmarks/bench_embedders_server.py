"""Server embedder throughput: concurrent batches against one-at-a-time, and a re-run from the ledger.

A local OpenAI-compatible ``/v1/embeddings`` server (the test server of tests/test_embedders_server.py,
127.0.0.1) answers each request after a fixed latency (``--latency-ms``, standing in for a GPU server's
time per batch). Measured in the same run: N texts with ``concurrency`` 1 (the baseline) and with
``--concurrency`` K, then the same N texts again through the run ledger (``CachedEmbedder``: no request).
Reported as ratios to the baseline; the target is a speed-up close to min(K, batches) while latency
dominates, and a ledger re-run that sends nothing.

    python benchmarks/bench_embedders_server.py [--texts 2000] [--batch-size 32] [--concurrency 4] [--latency-ms 50]

Writes a table to stdout and benchmarks/results/embedders_server.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    args = ap.parse_args()

    from test_embedders_server import EmbeddingsServer  # the test's server

    from pgscore.ledger import Ledger
    from pgscore.models.embedders import CachedEmbedder, load_embedder

    texts = [f"Satz Nummer {i}: wie geht es dir heute?" for i in range(args.texts)]
    rows = []
    with EmbeddingsServer(delay_s=args.latency_ms / 1000) as server:
        def embedder(conc: int):
            return load_embedder({"backend": "openai", "model": "bench", "base_url": server.url,
                                  "batch_size": args.batch_size, "options": {"concurrency": conc}})

        timings = {}
        for label, conc in (("sequential (baseline)", 1), (f"concurrency {args.concurrency}", args.concurrency)):
            emb = embedder(conc)
            t0 = time.perf_counter()
            emb.encode(texts)
            timings[label] = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            ledger = Ledger(tmp)
            CachedEmbedder(embedder(args.concurrency), ledger).encode(texts)
            sent = len(server.batches)
            t0 = time.perf_counter()
            CachedEmbedder(embedder(args.concurrency), ledger).encode(texts)
            timings["re-run from the ledger"] = time.perf_counter() - t0
            assert len(server.batches) == sent, "the re-run sent requests"
            ledger.close()
    base = timings["sequential (baseline)"]
    for label, sec in timings.items():
        rows.append({"run": label, "seconds": round(sec, 3), "texts_per_s": round(args.texts / sec, 1),
                     "speedup_vs_baseline": round(base / sec, 2)})
    width = max(len(r["run"]) for r in rows)
    print(f"{'run':<{width}}  seconds  texts/s  speed-up")
    for r in rows:
        print(f"{r['run']:<{width}}  {r['seconds']:7.3f}  {r['texts_per_s']:7.1f}  {r['speedup_vs_baseline']:7.2f}x")
    out = ROOT / "benchmarks" / "results" / "embedders_server.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "machine": platform.platform(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
