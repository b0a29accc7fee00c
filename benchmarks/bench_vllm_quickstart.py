"""The quickstart stage by stage on each engine: ``pgscore run examples/quickstart.yaml`` as shipped
(transformers) and with its teachers, judge and perplexity model on ``backend: vllm``.

Run in the vLLM environment: ``.venv-vllm/bin/python benchmarks/bench_vllm_quickstart.py [--engines
transformers vllm] [--config examples/quickstart.yaml]``. Each engine gets a fresh results folder under
``benchmarks/results/quickstart-<engine>/`` (deleted first) and runs in its own process, one after the other;
the wall time includes every model load (vLLM's engine start-up too). The student is trained and evaluated
with transformers in both (TRL fine-tunes a torch model). Stage seconds come from the run's
``summary.json``. Writes ``benchmarks/results/vllm_quickstart.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


def vllm_variant(cfg: dict) -> dict:
    """The experiment with every ``tiny:`` teacher / judge / perplexity model on ``vllm:tiny:``."""
    cfg = json.loads(json.dumps(cfg))

    def swap(v):
        if isinstance(v, dict) and v.get("backend") == "tiny":  # {backend: tiny, model: NAME, batch_size: ...}
            return {**v, "backend": "vllm", "model": f"tiny:{v['model']}"}
        return f"vllm:{v}" if isinstance(v, str) and v.startswith("tiny:") else v

    for t in cfg.get("teachers", []):
        t["model"] = swap(t.get("model"))
    m = cfg.setdefault("metrics", {})
    for k in ("judge", "perplexity_model"):
        if k in m:
            m[k] = swap(m[k])
    return cfg


def run(engine: str, config: Path, only: str | None = None) -> dict:
    cfg = yaml.safe_load(config.read_text())
    if engine == "vllm":
        cfg = vllm_variant(cfg)
    out = RESULTS / f"quickstart-{engine}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    exp = out / "experiment.yaml"
    exp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    t = time.monotonic()
    cmd = [sys.executable, "-m", "pgscore", "run", str(exp), "--out", str(out / "results")]
    if only:
        cmd += ["--only", only]
    r = subprocess.run(cmd,
                       capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "VLLM_LOGGING_LEVEL": os.environ.get("VLLM_LOGGING_LEVEL", "WARNING")})
    wall = time.monotonic() - t
    (out / "run.log").write_text(r.stdout + "\n" + r.stderr)
    summary = {}
    for p in (out / "results").rglob("summary.json"):
        summary = json.loads(p.read_text())
    return {"engine": engine, "rc": r.returncode, "wall_s": round(wall, 1), "summary": summary,
            "log_tail": (r.stdout + r.stderr)[-1500:] if r.returncode else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", nargs="+", default=["transformers", "vllm"])
    ap.add_argument("--config", type=Path, default=ROOT / "examples" / "quickstart.yaml")
    ap.add_argument("--only", default=None,
                    help="stages to run, e.g. seed,synthesize,measure: the ones whose models change engine "
                         "(students are trained and evaluated with transformers on both)")
    args = ap.parse_args()
    rows = [run(e, args.config, args.only) for e in args.engines]
    for r in rows:
        print(r["engine"], r["rc"], r["wall_s"], "s", flush=True)
    by = {r["engine"]: r for r in rows}
    ratio = (round(by["vllm"]["wall_s"] / by["transformers"]["wall_s"], 2)
             if {"vllm", "transformers"} <= set(by) and by["transformers"]["wall_s"] else None)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "vllm_quickstart.json").write_text(json.dumps({"loadavg": os.getloadavg(), "only": args.only,
                                                              "rows": rows,
                                                              "wall_vllm_over_transformers": ratio}, indent=2))


if __name__ == "__main__":
    main()
