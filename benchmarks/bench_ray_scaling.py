"""Throughput of RayModel replicas on a real multi-node Ray cluster: 1, 2 and 4 replicas.

A head node and two worker nodes (2 logical CPUs each) on this machine (:class:`pgscore.dist.LocalCluster`),
the fake OpenAI-compatible server in its own process at a fixed per-request latency, and one batched chat
call of N distinct requests per replica count (each replica an OpenAI-compatible client with
``concurrency`` requests in flight). Reported per replica count: requests/s end to end (actor start-up
included, what one batched call of a stage costs) and in steady state (first result to last), and each
as a ratio to one replica; the goal is >= 0.8 x linear. The work is I/O-bound (replicas wait on the
server), so it scales past the 2 physical cores. Writes benchmarks/results/bench_ray_scaling.json.

    python benchmarks/bench_ray_scaling.py [--n 1600] [--latency-ms 100] [--concurrency 4] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(latency_ms: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_openai_server.py"), "--port", str(port),
                             "--max-seconds", "1800", "--delay-ms", str(latency_ms)])
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}/v1"


def one_run(url: str, replicas: int, n: int, concurrency: int, batch_size: int, tag: str) -> dict:
    from pgscore.dist import RayModel
    from pgscore.models import ModelSpec, SamplingParams

    spec = ModelSpec(backend="openai", model="fake", base_url=url, concurrency=concurrency,
                     options={"backoff_base": 0.01})
    model = RayModel(spec, replicas=replicas, batch_size=batch_size, num_cpus=1)
    convs = [[{"role": "user", "content": f"{tag} request {i}"}] for i in range(n)]
    arrivals: list[float] = []
    t0 = time.perf_counter()
    out = model.chat(convs, SamplingParams(temperature=0.0, max_tokens=16),
                     on_result=lambda i, g: arrivals.append(time.perf_counter()))
    wall = time.perf_counter() - t0
    model.close()
    errors = sum(g.error is not None for g in out)
    first, last = min(arrivals), max(arrivals)
    # steady state: results after the first block, over the time from the first block to the last
    steady = (n - batch_size) / (last - first) if last > first else float("nan")
    return {"replicas": replicas, "n": n, "errors": errors, "wall_s": round(wall, 2),
            "first_result_s": round(first - t0, 2), "rps_end_to_end": round(n / wall, 2),
            "rps_steady": round(steady, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1600)
    ap.add_argument("--latency-ms", type=float, default=100)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--replicas", default="1,2,4")
    a = ap.parse_args()
    os.environ.setdefault("PGSCORE_RAY_PROGRESS", "0")

    from pgscore.dist import LocalCluster, connect

    server, url = start_server(a.latency_ms)
    rows = []
    try:
        with LocalCluster(workers=2, cpus_per_worker=2, head_cpus=0, object_store_mb=100) as cluster:
            os.environ.update(cluster.env)  # the cluster's auth mode (see LocalCluster.env)
            connect(cluster.address)
            for r in [int(x) for x in a.replicas.split(",")]:
                row = one_run(url, r, a.n, a.concurrency, a.batch_size, tag=f"r{r}")
                rows.append(row)
                print(json.dumps(row), flush=True)
            import ray

            ray.shutdown()
    finally:
        server.terminate()
    base = rows[0]
    for row in rows:
        k = row["replicas"] / base["replicas"]
        row["ratio_end_to_end"] = round(row["rps_end_to_end"] / base["rps_end_to_end"], 3)
        row["ratio_steady"] = round(row["rps_steady"] / base["rps_steady"], 3)
        row["share_of_linear_end_to_end"] = round(row["ratio_end_to_end"] / k, 3)
        row["share_of_linear_steady"] = round(row["ratio_steady"] / k, 3)
    ideal = a.concurrency / (a.latency_ms / 1000)
    result = {
        "what": "RayModel replicas on a local 3-node Ray cluster vs the fake server at fixed latency",
        "latency_ms": a.latency_ms, "concurrency_per_replica": a.concurrency, "batch_size": a.batch_size,
        "ideal_rps_per_replica": ideal, "rows": rows, "machine": platform.platform(),
        "cpus": os.cpu_count(), "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out = ROOT / "benchmarks" / "results" / "bench_ray_scaling.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
