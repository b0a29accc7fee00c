"""examples/slurm/pgscore_ray.sbatch: it parses (bash -n), and its dry run prints the commands it would launch."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "slurm" / "pgscore_ray.sbatch"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def dry_run(*args: str, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    e.update(DRY_RUN="1", **env)
    return subprocess.run(["bash", str(SCRIPT), *args], env=e, capture_output=True, text=True, timeout=60)


def test_parses():
    r = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    head = SCRIPT.read_text().splitlines()
    assert head[0] == "#!/bin/bash"
    assert "#SBATCH --requeue" in head and any(ln.startswith("#SBATCH --nodes=") for ln in head)


def test_dry_run_prints_the_cluster_and_the_study():
    r = dry_run("study.yaml", "--only", "synthesize", PGSCORE_NODES="gpu01 gpu02 gpu03", SLURM_CPUS_PER_TASK="32",
                GPUS_PER_NODE="8", PGSCORE_HEAD_IP="10.0.0.1")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if not ln.startswith("#")]
    assert len(lines) == 3, r.stdout
    head, workers, study = (shlex.split(ln.removesuffix(" &")) for ln in lines)
    assert lines[0].endswith(" &") and lines[1].endswith(" &") and not lines[2].endswith("&")
    # the head: one task on the first node, blocking `ray start --head` with the job's CPUs and GPUs
    assert head[:5] == ["srun", "--nodes=1", "--ntasks=1", "-w", "gpu01"]
    assert head[5:8] == ["ray", "start", "--head"]
    assert {"--node-ip-address=10.0.0.1", "--port=6379", "--num-cpus=32", "--num-gpus=8", "--block"} <= set(head)
    # the workers: one `ray start` per remaining node, joining the head
    assert workers[:4] == ["srun", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1"]
    assert "--exclude=gpu01" in workers and "--address=10.0.0.1:6379" in workers and "--block" in workers
    # the study, on the head node, pointed at the cluster through RAY_ADDRESS
    assert study == ["RAY_ADDRESS=10.0.0.1:6379", "pgscore", "run", "study.yaml", "--only", "synthesize"]
    waits = [ln for ln in r.stdout.splitlines() if ln.startswith("# wait")]
    assert waits == ["# wait until 1 Ray nodes are alive at 10.0.0.1:6379",
                     "# wait until 3 Ray nodes are alive at 10.0.0.1:6379"]


def test_one_node_job_starts_no_workers_and_quotes_paths():
    r = dry_run("my study.yaml", PGSCORE_NODES="n1", RAY_PORT="7000", PGSCORE_VENV="/opt/venvs/pg")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "source /opt/venvs/pg/bin/activate"
    assert not any("--exclude" in ln for ln in out)
    assert shlex.split(out[-1]) == ["RAY_ADDRESS=n1:7000", "pgscore", "run", "my study.yaml"]


def test_usage_error_without_experiment():
    r = dry_run(PGSCORE_NODES="n1")
    assert r.returncode != 0 and "usage: sbatch pgscore_ray.sbatch EXPERIMENT.yaml" in r.stderr
