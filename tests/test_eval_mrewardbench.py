"""M-RewardBench as the paper scores it: judge prompt in MCF, seeded A/B order, upstream weighted accuracy
(EXAMPLE_COUNTS) recomputable from the per-example output; today's hub schema and the old one."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from pgscore.evaluation.m_rewardbench import EXAMPLE_COUNTS, JUDGE_PROMPT, SUBSET_MAPPING, gold_position
from pgscore.evaluation.metrics import rewardbench_weighted_accuracy
from pgscore.evaluation.registry import get_task
from pgscore.evaluation.runner import evaluate, examples_for
from pgscore.models.base import ContinuationScore, Generation, LanguageModel, ModelSpec
from pgscore.paths import data_dir

FIX = Path(__file__).parent / "fixtures"
CURRENT = FIX / "eval" / "m_rewardbench_deu_current.jsonl"
OLD = FIX / "m_rewardbench_sample.jsonl"
RIGHT = {101, 103, 105, 106, 108, 110, 111}  # the fake judge picks the chosen response on these ids


class JudgeLM(LanguageModel):
    """Answers the letter of the response it prefers: ``prefer`` maps user prompt -> response text."""

    def __init__(self, prefer: dict[str, str]):
        self.spec = ModelSpec(backend="fake", model="judge")
        self.prefer = prefer
        self.contexts = []

    def chat(self, conversations, params):  # pragma: no cover - not used
        return [Generation("") for _ in conversations]

    def complete(self, prompts, params):  # pragma: no cover - not used
        return [Generation("") for _ in prompts]

    def loglikelihood(self, requests):
        out = []
        for ctx, cont in requests:
            self.contexts.append(ctx)
            prompt = next(p for p in self.prefer if p in ctx)
            want = self.prefer[prompt].rstrip(".?,:").lower()
            body = ctx.split("\n A. ", 1)[1]
            shown = {"A": body.split("\n B. ")[0].lower(), "B": body.split("\n B. ")[1].rsplit("\n", 1)[0].lower()}
            letter = next(k for k, v in shown.items() if v.rstrip(".?,:") == want)
            out.append(ContinuationScore(logprob=-0.1 if cont.strip() == letter else -3.0, n_tokens=1))
        return out


def _rows():
    return [json.loads(x) for x in CURRENT.read_text(encoding="utf-8").splitlines() if x.strip()]


def _judge():
    return JudgeLM({r["prompt"]: (r["chosen"] if r["id"] in RIGHT else r["rejected"]) for r in _rows()})


def test_weighted_accuracy_by_hand():
    # upstream: per-subset accuracy, weighted by EXAMPLE_COUNTS inside each category, plain mean of categories
    chat = (0.5 * 79 + 1.0 * 24) / (79 + 24)  # alpacaeval-easy 1/2, mt-bench-easy 1/1
    hard = (0.0 * 35 + 1.0 * 76) / (35 + 76)  # mt-bench-hard 0/1, llmbar-natural 2/2
    safety = (0.0 * 135 + 0.5 * 247) / (135 + 247)  # donotanswer 0/1, xstest-should-respond 1/2
    reasoning = (1.0 * 983 + 0.0 * 163) / (983 + 163)  # math-prm 2/2 (counted as 983), hep-python 0/1
    expected = (chat + hard + safety + reasoning) / 4
    assert expected == pytest.approx(0.620563, abs=1e-6)
    rows = _rows()
    got = rewardbench_weighted_accuracy([float(r["id"] in RIGHT) for r in rows], [r["source"] for r in rows],
                                        EXAMPLE_COUNTS, SUBSET_MAPPING)
    assert got == pytest.approx(expected)
    # neither pooled (7/12) nor the unweighted per-category mean
    assert got != pytest.approx(7 / 12)
    # a category without rows counts 0 (upstream's calculate_scores_per_section)
    only_chat = rewardbench_weighted_accuracy([1.0], ["alpacaeval-easy"], EXAMPLE_COUNTS, SUBSET_MAPPING)
    assert only_chat == pytest.approx(0.25)


def test_current_schema_evaluates_and_score_recomputes(tmp_path):
    lm = _judge()
    res = evaluate(lm, ["m_rewardbench"], ["de"], out_dir=tmp_path, hub=False, data_files={"m_rewardbench": str(CURRENT)},
                   progress=False)
    r = res.iloc[0]
    assert r.status == "ok" and r.n == 12 and r.formulation == "mcf" and r.primary_metric == "correct"
    ex = examples_for(tmp_path, r.model_dir, "m_rewardbench", "de")
    assert {"example_id", "source", "category", "gold", "correct"} <= set(ex.columns)
    assert sorted(ex.loc[ex.correct == 1, "example_id"].astype(int)) == sorted(RIGHT)
    recomputed = rewardbench_weighted_accuracy(ex["correct"], ex["source"], EXAMPLE_COUNTS, SUBSET_MAPPING)
    assert r.score == pytest.approx(recomputed) and r.score == pytest.approx(0.620563, abs=1e-6)
    # one forward context per item, both letters scored on it; the judge prompt of reward-bench
    ctx = lm.contexts[0]
    assert ctx.startswith("Frage: Please act as an impartial judge") and ctx.endswith("\nAntwort:")
    assert "The question provided is in deu_Latn." in ctx and "Here is the user question: " in ctx


def test_ab_order_is_seeded_per_item():
    ids = [str(i) for i in range(200)]
    pos = [gold_position(i, 0) for i in ids]
    assert 70 < sum(pos) < 130  # both orders occur, about half each
    assert pos == [gold_position(i, 0) for i in ids]  # fixed seed: same order every run
    assert pos != [gold_position(i, 1) for i in ids]  # another seed: another draw
    t = get_task("m_rewardbench")
    d = t.load("de", hub=False, local=str(CURRENT))
    ctx, conts, golds = t.prompts(d, "de", seed=0)
    assert conts[0] == [" A", " B"]
    for e, c, g in zip(d.examples, ctx, golds):
        shown_a = c.split("\n A. ")[1].split("\n B. ")[0]
        assert (shown_a.rstrip(".").lower() == e["chosen"].rstrip(".").lower()) == (g == 0)  # lighteval capitalises


def test_old_schema_reads_subset_column_and_cloze_option(tmp_path):
    t = get_task("m_rewardbench")
    d = t.load("id", hub=False, local=str(OLD))
    assert len(d.examples) == 9 and {e["source"] for e in d.examples} >= {"alpacaeval-easy", "math-prm"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": 1, "language": "deu_Latn", "prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    with pytest.raises(Exception, match="source \\(or subset\\)"):
        t.load("de", hub=False, local=str(bad))
    # cloze: responses as continuations of the prompt, per-token mean decides
    t.set_formulation("cloze")
    ctx, conts, golds = t.prompts(t.load("de", hub=False, local=str(CURRENT)), "de", seed=0)
    assert golds == [0] * 12 and conts[0][0].startswith("Die Hauptstadt")
    with pytest.raises(Exception, match="unknown formulation"):
        t.set_formulation("generative")


@pytest.mark.skipif(data_dir(required=False) is None, reason="offline data folder not present")
def test_counts_match_meta_file():
    meta = json.loads((data_dir() / "m_rewardbench_meta" / "weighting_constants.json").read_text())
    assert meta["EXAMPLE_COUNTS"] == EXAMPLE_COUNTS and meta["SUBSET_MAPPING"] == SUBSET_MAPPING


def test_judge_prompt_is_the_authors_text():
    # ljvmiranda921/polyglot-teachers scripts/lighteval_tasks.py (reward-bench generative.py, tie removed)
    assert JUDGE_PROMPT.startswith("Please act as an impartial judge and evaluate the quality of the responses "
                                   "provided by two AI assistants to the user question displayed below. ")
    assert '"A" if assistant A is better, "B" if assistant B is better.Don\'t put any quotation' in JUDGE_PROMPT
    assert JUDGE_PROMPT.endswith("Here is the user question: {question} ")
    assert "[[C]]" not in JUDGE_PROMPT


@pytest.mark.slow
def test_cli_current_schema_file_real_model(tmp_path, capsys):
    """The issue's command on today's schema, with the real tiny SmolLM2 model."""
    from pgscore.cli import main

    out = tmp_path / "eval"
    try:
        main(["evaluate", "--model", "tiny:smollm2-135m", "--languages", "de", "--benchmarks", "m_rewardbench",
              "--data", f"m_rewardbench={CURRENT}", "--no-hub", "--out", str(out)])
    except SystemExit as exc:  # success returns; only an exit code 0 is acceptable otherwise
        assert exc.code in (0, None), capsys.readouterr().err
    folder = next(p.parent for p in out.glob("*/summary.parquet"))
    summ = pd.read_parquet(folder / "summary.parquet").iloc[0]
    ex = pd.read_parquet(folder / "m_rewardbench__de.parquet")
    assert summ.status == "ok" and summ.n == 12
    assert summ.score == pytest.approx(rewardbench_weighted_accuracy(ex["correct"], ex["source"], EXAMPLE_COUNTS,
                                                                     SUBSET_MAPPING))
    assert all(len(lp) == 2 and all(x < 0 for x in lp) for lp in ex["logprobs"])
    assert not math.isnan(summ.graded)
