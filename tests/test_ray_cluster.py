"""A real multi-node Ray cluster on this machine: `pgscore run` through it, and worker nodes SIGKILLed mid-stage.

The cluster is a head (0 CPUs: it schedules, stores the driver's objects, runs nothing) and two worker
nodes of 1 CPU, each its own `ray start` (own raylet and object store) on 127.0.0.2 / 127.0.0.3, started
and stopped by pid through :class:`pgscore.dist.LocalCluster`. The teacher is the fake OpenAI-compatible
server at a fixed latency, which counts and timestamps every request.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytest.importorskip("ray", reason="Ray Data not installed (pip install 'pgscore[dist]')")
psutil = pytest.importorskip("psutil")

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai_server import FakeOpenAIServer  # noqa: E402

from pgscore.dist import LocalCluster  # noqa: E402

pytestmark = pytest.mark.slow

RAY_BATCH = 4  # requests per map_batches call


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(workers=2, cpus_per_worker=1, head_cpus=0, object_store_mb=80) as c:
        yield c


def experiment(path: Path, url: str, address: str | None, rows_per_cell: int, concurrency: int = 1) -> Path:
    exp = {
        "name": "ray-cluster",
        "languages": ["de"],
        "teachers": [{"name": "fake", "model": {"backend": "openai", "model": "fake", "base_url": url,
                                                "concurrency": concurrency, "options": {"backoff_base": 0.01}},
                      "sampling": {"temperature": 0.0, "max_tokens": 48}}],
        "seed": {"per_language": 12},
        "synthesis": {"examples_per_cell": rows_per_cell, "trials": 1, "batch_size": rows_per_cell},
    }
    if address is not None:
        exp["engine"] = {"ray": {"address": address, "replicas": 2, "batch_size": RAY_BATCH, "num_cpus": 1,
                                 "max_retries": 3}}
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def driver_env() -> dict[str, str]:
    """A driver joining the test cluster: the cluster's auth mode (see LocalCluster.env), no progress bars."""
    return dict(os.environ, PGSCORE_RAY_PROGRESS="0", RAY_USAGE_STATS_ENABLED="0",
                RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "disabled"))


def pgscore_run(exp: Path, out: Path, **popen) -> subprocess.Popen:
    env = driver_env()
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen([sys.executable, "-m", "pgscore", "run", str(exp), "--out", str(out),
                             "--only", "seed,synthesize"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def ledger_count(out: Path) -> int:
    try:
        db = sqlite3.connect(out / "ledger.sqlite", timeout=30)
        try:
            return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        finally:
            db.close()
    except sqlite3.OperationalError:
        return 0


def stored_times(out: Path) -> dict[str, float]:
    """Last user message -> time its result was stored in the driver's ledger."""
    db = sqlite3.connect(out / "ledger.sqlite")
    try:
        return {json.loads(req)[-1]["content"]: t for req, t in db.execute("SELECT request, created FROM calls")}
    finally:
        db.close()


def test_cluster_is_real(cluster):
    # the check `pgscore run` does before any stage, from a separate driver process
    code = ("from pgscore.engine import check_engine; import sys; "
            "print(check_engine({'ray': {'address': sys.argv[1], 'replicas': 2, 'num_cpus': 1}}))")
    r = subprocess.run([sys.executable, "-c", code, cluster.address], capture_output=True, text=True, timeout=120,
                       env=driver_env())
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"Ray cluster {cluster.address}: 3 nodes, 2 CPUs, 0 GPUs; 2 replicas x (1 CPU, 0 GPU)" in r.stdout
    # three raylets, three process groups, three addresses
    pids = [cluster.raylet_pid(i) for i in range(2)]
    assert all(pids) and len(set(pids)) == 2
    code = ("import ray, sys, json; ray.init(address=sys.argv[1], log_to_driver=False); "
            "print(json.dumps(sorted(n['NodeManagerAddress'] for n in ray.nodes() if n['Alive'])))")
    r = subprocess.run([sys.executable, "-c", code, cluster.address], capture_output=True, text=True, timeout=120,
                       env=driver_env())
    ips = json.loads(r.stdout.strip().splitlines()[-1])
    assert "127.0.0.2" in ips and "127.0.0.3" in ips and len(ips) == 3


def test_missing_resources_fail_before_any_stage(cluster, tmp_path):
    with FakeOpenAIServer(max_seconds=120) as srv:
        exp = experiment(tmp_path / "exp.yaml", srv.url, cluster.address, 3)
        raw = yaml.safe_load(exp.read_text())
        raw["engine"]["ray"]["num_gpus"] = 1
        exp.write_text(yaml.safe_dump(raw))
        proc = pgscore_run(exp, tmp_path / "out")
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 2, out[-3000:]
        line = [ln for ln in out.splitlines() if ln.strip()][-1]
        assert "has no node with 1 GPUs for one replica (largest node: 0 GPUs)" in out, out[-3000:]
        assert "Traceback" not in out and line.startswith("error")
        assert sum(srv.attempts.values()) == 0 and not (tmp_path / "out" / "synthetic.parquet").exists()


def test_pgscore_run_on_the_cluster_equals_a_local_run(cluster, tmp_path):
    with FakeOpenAIServer(delay_s=0.05, max_seconds=600) as srv:
        local = tmp_path / "local"
        finish(pgscore_run(experiment(tmp_path / "local.yaml", srv.url, None, 24, concurrency=4), local))
        n_local = sum(srv.attempts.values())
        srv.reset()
        dist = tmp_path / "dist"
        log = finish(pgscore_run(experiment(tmp_path / "dist.yaml", srv.url, cluster.address, 24), dist))
        assert f"Ray cluster {cluster.address}: 3 nodes, 2 CPUs, 0 GPUs" in log
        expected = pd.read_parquet(local / "synthetic.parquet")
        got = pd.read_parquet(dist / "synthetic.parquet")
        assert len(got) == 24
        pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))
        assert sum(srv.attempts.values()) == n_local  # the same requests, each sent once
        assert max(srv.answered.values()) == 1
        assert ledger_count(dist) == n_local


def test_worker_nodes_killed_mid_stage(cluster, tmp_path):
    """3 SIGKILLs of a worker's raylet at seeded random points of one synthesis stage; after each a
    replacement node joins (what a Slurm requeue or an autoscaler does) while the stage goes on over the
    surviving node. Then the driver is SIGKILLed too and the same `pgscore run` resumes. The dataset equals
    an uninterrupted run's row for row; no request whose result was stored is sent again."""
    rows = 120
    with FakeOpenAIServer(delay_s=0.5, max_seconds=900) as srv:
        ref = tmp_path / "ref"
        finish(pgscore_run(experiment(tmp_path / "ref.yaml", srv.url, None, rows, concurrency=8), ref))
        expected = pd.read_parquet(ref / "synthetic.parquet")
        n_ref = sum(srv.attempts.values())
        srv.reset()

        out = tmp_path / "killed"
        rng = random.Random(15)
        targets = sorted(rng.sample(range(8, 80), 3))
        proc = pgscore_run(experiment(tmp_path / "dist.yaml", srv.url, cluster.address, rows), out)
        kills: list[tuple[int, int]] = []  # (ledger rows when killed, raylet pid)
        deadline = time.time() + 600
        while proc.poll() is None and time.time() < deadline and len(kills) < len(targets):
            n = ledger_count(out) if (out / "ledger.sqlite").exists() else 0
            if n >= targets[len(kills)]:
                alive = [i for i, w in enumerate(cluster.workers) if w is not None]
                victim = rng.choice(alive)
                kills.append((n, cluster.kill_worker(victim)))
                cluster.add_worker()  # blocks until the new node registered; the stage goes on meanwhile
            time.sleep(0.05)
        assert len(kills) == 3, kills
        # then the driver itself dies (SIGKILL) a few rows later, and the same command resumes
        driver_target = min(kills[-1][0] + 10, rows - 8)
        while proc.poll() is None and time.time() < deadline and ledger_count(out) < driver_target:
            time.sleep(0.05)
        assert proc.poll() is None, "the stage ended before the driver could be killed"
        at_driver_kill = ledger_count(out)
        proc.kill()
        proc.wait(timeout=60)
        assert at_driver_kill < rows
        log = finish(pgscore_run(tmp_path / "dist.yaml", out))
        assert f"Ray cluster {cluster.address}: 3 nodes" in log  # the resumed run found the cluster again
        assert [k[0] for k in kills] == sorted(k[0] for k in kills) and kills[-1][0] < rows
        assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                       for _, pid in kills)

        got = pd.read_parquet(out / "synthetic.parquet")
        pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))  # row for row

        stored = stored_times(out)
        assert len(stored) == n_ref
        for t, _path, key, _status in srv.log:
            assert t < stored[srv.texts[key]], f"a stored request was sent again: {srv.texts[key]!r}"
        # Only results lost with a node (or with the driver) are sent again: at most the batches held by
        # the lost replicas (one running + Ray Data's default 4 queued per actor) per kill.
        resent = sum(srv.attempts.values()) - n_ref
        assert 0 <= resent <= (len(kills) + 2) * 5 * RAY_BATCH, resent
        db = sqlite3.connect(out / "ledger.sqlite")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        print(f"node kills at ledger rows {[k[0] for k in kills]}, driver killed at {at_driver_kill}; "
              f"{resent} requests re-sent (never a stored one)")
