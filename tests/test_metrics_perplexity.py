from __future__ import annotations

import math

import pytest

from pgscore.metrics.perplexity import (
    DEFAULT_TEMPLATE,
    context_for,
    from_score,
    response_perplexity,
    summarize,
)
from pgscore.models.base import ContinuationScore, LanguageModel, ModelSpec

PAIRS = [
    ("Apa ibu kota Prancis ?", "Ibu kota Prancis adalah Paris ."),
    ("Wie spät ist es ?", "Es ist drei Uhr ."),
    ("Nenne drei Farben .", "Rot , Grün und Blau sind drei Farben , die man oft sieht ."),
    ("Sebutkan satu buah .", "Mangga ."),
    ("Erkläre kurz , was ein Vulkan ist .", "Ein Vulkan ist ein Berg , aus dem heiße Lava kommt ."),
]


# ------------------------------------------------------------------ pure aggregation (hand-computed)


class FixedScores(LanguageModel):
    """Returns given continuation scores and records the requests."""

    def __init__(self, scores):
        self.spec = ModelSpec(backend="fake", model="fixed")
        self.scores, self.requests = list(scores), []

    def chat(self, conversations, params):
        raise NotImplementedError

    def complete(self, prompts, params):
        raise NotImplementedError

    def loglikelihood(self, requests):
        self.requests += list(requests)
        return [self.scores.pop(0) for _ in requests]


def test_per_example_perplexity_and_summary_by_hand():
    scores = [
        ContinuationScore(logprob=-2 * math.log(4), n_tokens=2),  # mean NLL ln4 -> ppl 4
        ContinuationScore(logprob=-3 * math.log(2), n_tokens=3, truncated=True),  # ppl 2
        ContinuationScore(logprob=-math.log(30), n_tokens=1),  # ppl 30
        ContinuationScore(logprob=0.0, n_tokens=0),  # empty response: undefined
    ]
    lm = FixedScores(scores)
    res = response_perplexity(lm, ["a", "b", "c", "d"], ["x", "y", "z", ""], chunk_size=3)
    assert [r.perplexity for r in res[:3]] == pytest.approx([4.0, 2.0, 30.0])
    assert math.isnan(res[3].perplexity) and res[1].truncated
    assert lm.requests[0] == ("a\n\n", "x")
    s = summarize(res)
    assert s.mean == pytest.approx(12.0) and s.median == pytest.approx(4.0)
    assert (s.n, s.n_truncated, s.n_undefined) == (3, 1, 1)


def test_template_is_literal_about_braces():
    assert context_for("Use {x} and {}", "Q: {prompt}\nA:") == "Q: Use {x} and {}\nA:"
    assert DEFAULT_TEMPLATE.format(prompt="p") == context_for("p")


def test_huge_nll_is_infinite_not_an_error():
    assert from_score(ContinuationScore(logprob=-1e6, n_tokens=1)).perplexity == math.inf
    assert math.isnan(summarize([]).mean)


# ------------------------------------------------------------------ a real (tiny, random) model


@pytest.fixture(scope="module")
def tiny_random_lm():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    local = pytest.importorskip("pgscore.models.local")
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted({w for p, r in PAIRS for w in (p + " " + r).split()})
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3} | {w: i + 4 for i, w in enumerate(words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    from tokenizers.processors import TemplateProcessing

    core.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    model = transformers.LlamaForCausalLM(cfg).float().eval()
    return torch, tok, model, local


def _reference_ppl(torch, tok, model, prompt, response):
    """exp(mean NLL) of the response tokens, computed directly: one unpadded sequence, no batching."""
    ctx = tok(context_for(prompt))["input_ids"]
    cont = tok(response, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    logp = torch.log_softmax(logits[:-1], dim=-1)
    targets = ids[0, 1:]
    token_lp = logp[torch.arange(len(targets)), targets]
    nll = -token_lp[len(ctx) - 1 :].mean().item()  # only the response tokens
    return math.exp(nll), len(cont)


def test_matches_hand_computed_loss_with_padding_and_bucketing(tiny_random_lm):
    torch, tok, model, local = tiny_random_lm
    lm = local.TransformersLM.from_objects(model, tok, ModelSpec(backend="hf", model="tiny-random", batch_size=3),
                                           is_base=True)
    prompts, responses = [p for p, _ in PAIRS], [r for _, r in PAIRS]
    got = response_perplexity(lm, prompts, responses, chunk_size=4)  # 2 chunks, padded batches inside
    for (p, r), g in zip(PAIRS, got):
        ref, n = _reference_ppl(torch, tok, model, p, r)
        assert g.n_tokens == n and not g.truncated
        assert g.perplexity == pytest.approx(ref, rel=1e-5)
    # the batch-mean loss of the research code would give every example the same value; we do not
    assert len({round(g.perplexity, 6) for g in got}) == len(PAIRS)


def test_truncation_is_flagged_and_counted(tiny_random_lm):
    torch, tok, model, local = tiny_random_lm
    lm = local.TransformersLM.from_objects(
        model, tok, ModelSpec(backend="hf", model="tiny-random", max_context=12), is_base=True
    )
    got = response_perplexity(lm, [p for p, _ in PAIRS], [r for _, r in PAIRS])
    lengths = [len(tok(context_for(p))["input_ids"]) + len(tok(r, add_special_tokens=False)["input_ids"])
               for p, r in PAIRS]
    assert [g.truncated for g in got] == [n > 12 for n in lengths]
    assert summarize(got).n_truncated == sum(n > 12 for n in lengths) > 0


# ------------------------------------------------------------------ templates: default and the authors' "paper"


def test_paper_template_concatenates_prompt_and_response_without_separator():
    from pgscore.errors import PgScoreError
    from pgscore.metrics.config import MetricsConfig
    from pgscore.metrics.perplexity import resolve_template

    lm = FixedScores([ContinuationScore(logprob=-1.0, n_tokens=1)] * 2)
    response_perplexity(lm, ["Wie spät ist es?", "b"], [" Drei Uhr.", "y"], template="paper")
    # the context is the bare prompt: context + continuation == prompt + response, byte for byte
    assert lm.requests[0] == ("Wie spät ist es?", " Drei Uhr.")
    assert "".join(lm.requests[0]) == "Wie spät ist es?" + " Drei Uhr."
    assert resolve_template("default") == DEFAULT_TEMPLATE == "{prompt}\n\n"
    assert MetricsConfig(perplexity_template="paper").perplexity_template == "paper"
    with pytest.raises(ValueError):
        MetricsConfig(perplexity_template="no placeholder")
    with pytest.raises(PgScoreError, match="has no"):
        resolve_template("no placeholder")


def test_paper_template_on_a_real_model_scores_only_response_tokens(tiny_random_lm):
    torch, tok, model, local = tiny_random_lm
    lm = local.TransformersLM.from_objects(model, tok, ModelSpec(backend="hf", model="tiny-random"), is_base=True)
    p, r = PAIRS[0][0], " " + PAIRS[0][1]  # the response brings its own leading space: the seam splits cleanly
    got = response_perplexity(lm, [p], [r], template="paper")[0]
    # the authors' way: tokenize prompt + response as one string, mask as many tokens as the prompt alone has
    full = tok(p + r)["input_ids"]
    n_prompt = len(tok(p)["input_ids"])
    cont = full[n_prompt:]
    assert full[:n_prompt] == tok(p)["input_ids"]
    ctx = full[:n_prompt]
    ids = torch.tensor([full])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double()[:-1], dim=-1)
    token_lp = logp[torch.arange(ids.shape[1] - 1), ids[0, 1:]]
    assert got.n_tokens == len(cont)
    assert got.perplexity == pytest.approx(math.exp(-token_lp[len(ctx) - 1 :].mean().item()), rel=1e-5)
    # this word-level tokenizer drops whitespace, so the default "\n\n" separator adds no token here
    assert response_perplexity(lm, [p], [r])[0].perplexity == pytest.approx(got.perplexity, rel=1e-9)


# ------------------------------------------------------------------ perplexity under each student base (§3.2)

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SYNTHETIC = Path(__file__).parent / "fixtures" / "metrics" / "synthetic.jsonl"


class ScaledWords(LanguageModel):
    """A response of w words gets w tokens at probability 1/(k(w+1)^p) each: perplexity exactly k(w+1)^p."""

    def __init__(self, name: str, k: float, p: float = 1.0):
        self.spec = ModelSpec(backend="fake", model=name)
        self.k, self.p, self.n_requests = k, p, 0

    def chat(self, conversations, params):
        raise NotImplementedError

    def complete(self, prompts, params):
        raise NotImplementedError

    def loglikelihood(self, requests):
        self.n_requests += len(requests)
        return [ContinuationScore(logprob=-len(c.split()) * math.log(self.k * (len(c.split()) + 1) ** self.p),
                                  n_tokens=len(c.split())) for _, c in requests]

    def count_tokens(self, texts):
        return [len(t.split()) for t in texts]


def _hash_embedder():
    import hashlib

    from pgscore.models.embedders import Embedder

    class HashEmbedder(Embedder):
        name = "hash-embedder"

        def _encode_batch(self, texts):
            out = []
            for t in texts:
                rng = np.random.default_rng(int(hashlib.sha1(t.encode()).hexdigest()[:8], 16))
                v = rng.normal(size=8)
                out.append(v / np.linalg.norm(v))
            return np.array(out, dtype=np.float32)

    return HashEmbedder()


def _ok_rows():
    from pgscore.io import read_table

    df = read_table(SYNTHETIC)
    return df[df["status"] == "ok"].reset_index(drop=True)


def test_student_bases_config_and_perplexity_targets(tmp_path):
    from pgscore.errors import PgScoreError
    from pgscore.metrics.config import MetricsConfig
    from pgscore.metrics.measure import perplexity_targets
    from pgscore.student.config import StudentConfig

    one = StudentConfig(base="tiny:gemma3-270m", reference="seed-sft")
    assert [(b.name, b.base, b.reference) for b in one.resolved_bases()] == [("gemma3-270m", "tiny:gemma3-270m",
                                                                             "seed-sft")]
    two = StudentConfig(bases=[{"base": "hf:google/gemma-3-1b-pt", "reference": "hf:google/gemma-3-1b-it"},
                               {"name": "olmo", "base": "hf:/models/olmo-3-7b.gguf"}])
    assert [b.name for b in two.resolved_bases()] == ["gemma-3-1b-pt", "olmo"]
    assert StudentConfig().resolved_bases() == []
    for bad, msg in [({"base": "tiny:a", "bases": [{"base": "tiny:b"}]}, "not both"),
                     ({"bases": [{"base": "tiny:x"}, {"base": "hf:y/x"}]}, "repeat: x"),
                     ({"bases": []}, "empty"), ({"bases": [{"name": "all", "base": "tiny:x"}]}, "'all'")]:
        with pytest.raises(ValueError, match=msg):
            StudentConfig(**bad)
    # through the experiment loader a bad value is a one-line PgScoreError
    from pgscore.config import load_experiment

    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("name: x\nlanguages: [de]\nteachers: [{name: t, model: tiny:smollm2-135m}]\n"
                        "student: {base: tiny:a, bases: [{base: tiny:b}]}\n")
    with pytest.raises(PgScoreError, match="student: set either"):
        load_experiment(bad_file)

    cfg = MetricsConfig()
    assert cfg.perplexity_model == "student"
    per_base, single, notes = perplexity_targets(cfg, two)
    assert per_base == {"gemma-3-1b-pt": "hf:google/gemma-3-1b-pt", "olmo": "hf:/models/olmo-3-7b.gguf"}
    assert single is None and not notes
    per_base, single, notes = perplexity_targets(cfg, None)  # no student: the embedded default, said so
    assert per_base is None and single == "tiny:gemma3-270m" and "no student base" in notes[0]
    per_base, single, _ = perplexity_targets(MetricsConfig(perplexity_model="hf:/m/base"), two)
    assert per_base is None and single == "hf:/m/base"  # an explicit base LM wins


def test_measure_dataset_per_student_base_by_hand():
    from pgscore.metrics.config import MetricsConfig
    from pgscore.metrics.measure import measure_dataset

    ok = _ok_rows()
    bases = {"small": ScaledWords("small", 1.0), "big": ScaledWords("big", 2.0)}
    ex, m = measure_dataset(ok, MetricsConfig(chunk_size=4), embedder=_hash_embedder(), perplexity_models=bases,
                            progress=False)
    n = len(ok)
    assert len(ex) == 2 * n and list(ex.columns[:6]) == ["id", "teacher", "language", "method", "trial", "student"]
    words = ok["response"].str.split().str.len().to_numpy()
    for name, k in (("small", 1.0), ("big", 2.0)):
        e = ex[ex["student"] == name]
        assert e["id"].tolist() == ok["id"].tolist()
        assert e["perplexity"].to_numpy() == pytest.approx(k * (words + 1))
    assert list(m.columns[:4]) == ["teacher", "language", "trial", "student"]
    groups = ok.groupby(["teacher", "language", "trial"]).size()
    assert len(m[m["method"] == "all"]) == 2 * len(groups)
    for (t, lang, trial), _ in groups.items():
        sel = (ok["teacher"] == t) & (ok["language"] == lang) & (ok["trial"] == trial)
        rows = m[(m["teacher"] == t) & (m["language"] == lang) & (m["trial"] == trial) & (m["method"] == "all")]
        by = rows.set_index("student")
        assert by.loc["small", "perplexity"] == pytest.approx(float(np.mean(words[sel.to_numpy()] + 1)))
        assert by.loc["big", "perplexity"] == pytest.approx(2 * by.loc["small", "perplexity"])
        # everything else does not depend on the base
        for col in ("prompt_diversity", "response_diversity", "n", "response_chars"):
            assert by.loc["small", col] == pytest.approx(by.loc["big", col])


def test_run_measure_loads_each_base_once_through_load_and_resumes_from_the_ledger(tmp_path):
    from pgscore.ledger import CachedModel, Ledger
    from pgscore.metrics.config import MetricsConfig
    from pgscore.metrics.measure import run_measure
    from pgscore.student.config import StudentConfig

    made: dict[str, ScaledWords] = {}
    calls: list[str] = []

    def load(spec):
        calls.append(str(spec))
        name = ModelSpec.parse(spec).model
        made.setdefault(str(spec), ScaledWords(name, 1.0 if name == "small" else 3.0))
        return made[str(spec)]

    student = StudentConfig(bases=[{"name": "s", "base": "fake:small"}, {"name": "b", "base": "fake:big"}])
    cfg = MetricsConfig(chunk_size=5)
    common = dict(embedder=_hash_embedder(), detector=None, counter=None, judge=None)
    ex, m, notes = run_measure(SYNTHETIC, tmp_path, cfg, progress=False, load=load, student=student, **common)
    assert sorted(calls) == ["fake:big", "fake:small"]  # once per base spec
    assert set(m["student"]) == {"s", "b"} and any("each student base" in x for x in notes)
    on_disk = pd.read_parquet(tmp_path / "metrics.parquet")
    assert set(on_disk["student"]) == {"s", "b"}
    sent = {k: v.n_requests for k, v in made.items()}
    assert sent == {"fake:small": 19, "fake:big": 19}
    # a re-run: every perplexity comes from the ledger, nothing is sent again
    ex2, m2, _ = run_measure(SYNTHETIC, tmp_path, cfg, progress=False, load=load, student=student, **common)
    assert {k: v.n_requests for k, v in made.items()} == sent
    pd.testing.assert_frame_equal(m.reset_index(drop=True), m2.reset_index(drop=True))
    stats = Ledger(tmp_path).stats()
    assert set(stats.loc[stats["stage"] == "measure.perplexity", "model"]) == {"fake:small", "fake:big"}
    # a loader that hands out ledger-wrapped models (the run context's) is used as is
    ledger = Ledger(tmp_path / "other")
    wrapped = {}

    def ctx_load(spec):
        wrapped.setdefault(str(spec), CachedModel(load(spec), ledger, stage="ctx"))
        return wrapped[str(spec)]

    run_measure(SYNTHETIC, tmp_path / "third", cfg, progress=False, load=ctx_load, student=student, **common)
    assert all(w.hits == 19 or w.misses == 19 for w in wrapped.values())
    ledger.close()


def test_two_student_bases_give_per_base_perplexity_z_and_pg_end_to_end():
    """measure (two bases) -> scoring.score_results: Z is taken over each base's rows (population std), PG
    per base; expected values recomputed here with numpy from the per-base metrics."""
    from pgscore.metrics.config import MetricsConfig
    from pgscore.metrics.measure import measure_dataset
    from pgscore.scoring import score_results

    ok = _ok_rows()
    bases = {"small": ScaledWords("small", 1.0), "sq": ScaledWords("sq", 1.0, p=2.0)}  # ppl w+1 vs (w+1)^2
    _, m = measure_dataset(ok, MetricsConfig(), embedder=_hash_embedder(), perplexity_models=bases, progress=False)
    ds = m[m["method"] == "all"].reset_index(drop=True)
    # a hand-made extrinsic table (contract 1): one trained student per dataset and base
    rng = np.random.default_rng(7)
    ext = ds[["teacher", "language", "trial", "student"]].copy()
    ext["base_score"], ext["reference_score"] = 0.30, 0.50
    ext["student_score"] = rng.uniform(0.30, 0.50, len(ext)).round(3)
    ext["pgr"] = (ext["student_score"] - 0.30) / 0.20
    ext["student_model"] = [f"hf:students/{t}-{lang}-{tr}-{s}" for t, lang, tr, s in
                            ext[["teacher", "language", "trial", "student"]].itertuples(index=False)]
    ext["pgr_reliable"], ext["pgr_note"] = True, ""
    scored, _ = score_results(m, ext, weight=0.5)
    assert set(scored["student"]) == {"small", "sq"}
    assert len(scored) == 2 * len(ds.groupby(["teacher", "language"]))

    def z(x):
        x = np.asarray(x, dtype=float)
        return (x - x.mean()) / x.std(ddof=0)

    for name in ("small", "sq"):
        rows = ds[ds["student"] == name].merge(ext, on=["teacher", "language", "trial", "student"])
        comps = np.column_stack([z(rows["prompt_diversity"]), z(rows["response_diversity"]),
                                 z(-np.log1p(rows["perplexity"]))])  # no judge here: three components
        rows["Z"] = comps.mean(axis=1)
        rows["PG"] = 0.5 * rows["pgr"] + 0.5 * rows["Z"]
        want = rows.groupby(["teacher", "language"])[["Z", "PG"]].mean()
        got = scored[scored["student"] == name].set_index(["teacher", "language"])
        for key, w in want.iterrows():
            assert got.loc[key, "intrinsic_z"] == pytest.approx(w["Z"], abs=1e-9)
            assert got.loc[key, "pg_score"] == pytest.approx(w["PG"], abs=1e-9)
    # the bases disagree on perplexity, hence on Z (same diversity, same synthetic data)
    by = scored.set_index(["teacher", "language", "student"])["intrinsic_z"].unstack("student")
    assert not np.allclose(by["small"], by["sq"])
