from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from pgscore.metrics.judge import (
    STATUSES,
    build_messages,
    build_prompt,
    build_raw,
    judge_pairs,
    judge_params,
    language_name,
    parse_verdict,
    rubric,
)

GOLDEN = Path(__file__).parent / "fixtures" / "templates"
PAIR = ("Apa ibu kota Prancis?", "Ibu kota Prancis adalah Paris.", "id")
from pgscore.models.base import ContinuationScore, Generation, LanguageModel, ModelSpec

CASES = [
    # (judge output, expected score, expected status)
    ("Feedback: Fluent Indonesian, answers fully. [RESULT] 4", 4, "ok"),
    ("Feedback: ok [RESULT] 5</s>", 5, "ok"),
    ("Feedback: good [RESULT]: 3\n\nI hope this helps!", 3, "ok"),
    ("Feedback: good [RESULT] (2)", 2, "ok"),
    ("Feedback: good [RESULT] **4**", 4, "ok"),
    ("feedback: good [result] Score: 1", 1, "ok"),
    ("Feedback: good [RESULT] 4/5", 4, "ok"),
    ("Feedback: good [RESULT] 4.0", 4, "ok"),
    ("Feedback: [RESULT] 2 was my first thought... [RESULT] 3", 3, "ok"),  # the last marker wins
    ("Feedback: 3 grammar errors, 2 wrong words. [RESULT] 2", 2, "ok"),  # numbers in feedback ignored
    ("Score: 4/5", 4, "ok"),
    ("The grammar is good. Score: 4", 4, "ok"),
    ("Rating: 5 - excellent", 5, "ok"),
    ("I would give this a score of 3.", 3, "ok"),
    ("This is a 4 out of 5 answer.", 4, "ok"),
    ("4", 4, "ok"),
    ("  **5**  ", 5, "ok"),
    ("3.", 3, "ok"),
    ('{"feedback": "Natural German.", "score": 5}', 5, "ok"),
    ('```json\n{"score": "2", "feedback": "Mostly English."}\n```', 2, "ok"),
    ('{"score": 4.0, "explanation": "fine"}', 4, "ok"),
    # not a usable score
    ("", None, "empty"),
    ("   \n ", None, "empty"),
    (None, None, "empty"),
    ("Feedback: good [RESULT] 0", None, "out_of_range"),
    ("Feedback: good [RESULT] 7", None, "out_of_range"),
    ("Feedback: good [RESULT] -1", None, "out_of_range"),
    ("Score: 10/10", None, "out_of_range"),
    ("7", None, "out_of_range"),
    ('{"score": 6}', None, "out_of_range"),
    ("Feedback: good [RESULT] 3.5", None, "unparsed"),
    ("Feedback: good [RESULT] four", None, "unparsed"),
    ("Feedback: good [RESULT]", None, "unparsed"),
    ("Feedback: the response is fluent and helpful.", None, "unparsed"),
    ("It has 3 paragraphs and 2 lists.", None, "unparsed"),  # stray numbers are never a score
    ('{"score": "excellent"}', None, "unparsed"),
    ('{"score": null, "feedback": "x"}', None, "unparsed"),
    ('{"score": true}', None, "unparsed"),
    ("Score: 3. On reflection, score: 4.", None, "ambiguous"),
    ("Score: 2/5 for language, score: 5/5 for helpfulness", None, "ambiguous"),
]


@pytest.mark.parametrize("text,score,status", CASES)
def test_parse_verdict(text, score, status):
    got_score, feedback, got_status = parse_verdict(text)
    assert (got_score, got_status) == (score, status)
    assert got_status in STATUSES
    assert got_score is None or isinstance(got_score, int)


def test_feedback_is_kept_without_the_label():
    _, feedback, _ = parse_verdict("Feedback: Natural idiom, one agreement error. [RESULT] 4")
    assert feedback == "Natural idiom, one agreement error."
    _, feedback, _ = parse_verdict('{"feedback": "Mostly English.", "score": 2}')
    assert feedback == "Mostly English."


def test_prompt_names_the_language_and_carries_the_pair():
    p = build_prompt(*PAIR)
    assert "Indonesian" in p and "Apa ibu kota Prancis?" in p and "Paris." in p
    assert "[RESULT]" in p and rubric("Indonesian") in p and rubric("id") == rubric("Indonesian")
    assert '"score"' in build_prompt("a", "b", "de", structured=True)
    assert language_name("ja") == "Japanese" and language_name("fil") == "Filipino"


def test_paper_judge_is_the_m_prometheus_absolute_grading_format():
    """Golden paper-preset judge prompt, checked section by section against prometheus-eval's absolute
    grading template (no reference answer) and the paper's rubric criteria (Figure 13)."""
    golden = (GOLDEN / "paper" / "judge_raw.txt").read_text(encoding="utf-8")
    raw = build_raw(*PAIR)
    assert raw == golden
    system, user = (m["content"] for m in build_messages(*PAIR))
    assert raw == f"{system}\n\n{user}" and user == build_prompt(*PAIR)
    assert system.startswith("You are a fair judge assistant")
    heads = re.findall(r"^###.*$", user, flags=re.M)
    assert heads == ["###Task Description:", "###The instruction to evaluate:", "###Response to evaluate:",
                     "###Score Rubrics:", "###Feedback:"]
    assert user.endswith("###Feedback:")  # the judge continues with its feedback
    steps = re.findall(r"^(\d)\. ", user, flags=re.M)
    assert steps == ["1", "2", "3", "4"]
    assert '"Feedback: (feedback on the criteria) [RESULT] (an integer from 1 to 5)"' in user
    assert "###The instruction to evaluate:\nApa ibu kota Prancis?\n\n###Response to evaluate:\n" \
           "Ibu kota Prancis adalah Paris.\n\n###Score Rubrics:\n[" in user
    r = rubric("id")
    criteria, *levels = r.splitlines()
    assert criteria.startswith("[") and criteria.endswith("]")  # SCORE_RUBRIC_TEMPLATE: [criteria]
    for word in ("fluent", "natural", "grammar", "culture", "follow the instruction"):
        assert word in criteria
    assert [lv.split(":")[0] for lv in levels] == [f"Score {i}" for i in range(1, 6)]
    assert all("Indonesian" in lv for lv in levels)


def test_json_variant_asks_for_the_schema_fields():
    user = build_prompt(*PAIR, structured=True)
    assert '{"feedback": "(feedback on the criteria)", "score": (an integer from 1 to 5)}' in user
    assert "[RESULT]" not in user and rubric("id") in user
    assert build_raw(*PAIR, structured=True).endswith(user)
    schema = judge_params(structured=True).json_schema
    assert set(schema["required"]) == {"feedback", "score"}
    assert parse_verdict('{"feedback": "Alami.", "score": 4}')[::2] == (4, "ok")


def test_legacy_judge_prompt_is_unchanged():
    assert build_prompt(*PAIR, templates="legacy") == (GOLDEN / "legacy" / "judge.txt").read_text(encoding="utf-8")
    assert build_prompt(*PAIR, structured=True, templates="legacy") == (
        GOLDEN / "legacy" / "judge_json.txt").read_text(encoding="utf-8")
    assert build_messages(*PAIR, templates="legacy") == [{"role": "user", "content": build_prompt(
        *PAIR, templates="legacy")}]  # legacy sends no system turn
    assert build_raw(*PAIR, templates="legacy") == build_prompt(*PAIR, templates="legacy")


def test_user_judge_templates(tmp_path):
    (tmp_path / "judge_rubric.j2").write_text("[Is it {{ language }}?]\nScore 1: no\nScore 5: yes\n")
    user = build_prompt(*PAIR, templates=str(tmp_path))
    assert "###Score Rubrics:\n[Is it Indonesian?]\nScore 1: no\nScore 5: yes\n\n###Feedback:" in user
    judge = ScriptedJudge(["Feedback: ya [RESULT] 5"])
    (v,) = judge_pairs(judge, [PAIR[0]], [PAIR[1]], "id", templates=str(tmp_path))
    assert v.score == 5 and "[Is it Indonesian?]" in judge.calls[0][1][0][-1]["content"]


def test_params_are_greedy_and_structured_on_request():
    assert judge_params().temperature == 0.0 and judge_params().json_schema is None
    schema = judge_params(structured=True).json_schema
    assert schema["properties"]["score"] == {"type": "integer", "minimum": 1, "maximum": 5}


class ScriptedJudge(LanguageModel):
    """A judge that answers from a script and records what it was asked (tests the plumbing only)."""

    def __init__(self, answers, chat=True):
        self.spec = ModelSpec(backend="fake", model="scripted")
        self.answers, self._chat, self.calls = list(answers), chat, []

    @property
    def has_chat_template(self) -> bool:
        return self._chat

    def _gen(self, n):
        out = []
        for _ in range(n):
            a = self.answers.pop(0)
            out.append(Generation(text="", error=a[1]) if isinstance(a, tuple) else Generation(text=a))
        return out

    def chat(self, conversations, params):
        self.calls.append(("chat", conversations, params))
        return self._gen(len(conversations))

    def complete(self, prompts, params):
        self.calls.append(("complete", prompts, params))
        return self._gen(len(prompts))

    def loglikelihood(self, requests):
        return [ContinuationScore(0.0, 0) for _ in requests]


def test_judge_pairs_records_every_status_and_never_defaults_to_one():
    judge = ScriptedJudge(["Feedback: fine [RESULT] 4", "no idea", ("err", "HTTP 500"), "[RESULT] 9"])
    verdicts = judge_pairs(judge, ["q1", "q2", "q3", "q4"], ["r1", "r2", "r3", "r4"], "de")
    assert [(v.score, v.status) for v in verdicts] == [(4, "ok"), (None, "unparsed"), (None, "error"),
                                                        (None, "out_of_range")]
    kind, convs, params = judge.calls[0]
    assert kind == "chat" and params.temperature == 0.0
    assert [m["role"] for m in convs[1]] == ["system", "user"]
    assert "German" in convs[1][1]["content"] and "q2" in convs[1][1]["content"]
    assert convs[1] == build_messages("q2", "r2", "de")


def test_base_model_judges_get_a_completion_prompt():
    judge = ScriptedJudge([" Fluent. [RESULT] 5"], chat=False)
    (v,) = judge_pairs(judge, ["q"], ["r"], "ja")
    assert judge.calls[0][0] == "complete" and judge.calls[0][1][0].endswith("###Feedback:")
    assert judge.calls[0][1][0] == build_raw("q", "r", "ja")  # the raw rendering, system text included
    assert judge.calls[0][1][0].startswith("You are a fair judge assistant")
    assert (v.score, v.feedback) == (5, "Fluent.")


# ---- constrained verdicts: score chosen by log-likelihood among "1".."5" --------------------------


class _ScoringJudge:
    """A judge whose feedback is fixed and whose log-likelihood prefers one score (chosen per pair)."""

    has_chat_template = True
    name = "fake:judge"

    def __init__(self, preferred: list[int]):
        self.preferred = preferred
        self.requests: list[tuple[str, str]] = []

    def render_chat(self, conversation):
        return "<|user|>" + conversation[0]["content"] + "<|assistant|>"

    def chat(self, conversations, params):
        from pgscore.models.base import Generation

        assert "[RESULT]" in params.stop  # feedback generation stops before the verdict
        return [Generation(text=f"Feedback: fluent text number {i}.") for i in range(len(conversations))]

    def loglikelihood(self, requests):
        from pgscore.models.base import ContinuationScore

        self.requests += list(requests)
        out = []
        for n, (ctx, cont) in enumerate(requests):
            pair = n // 5
            out.append(ContinuationScore(logprob=-0.1 if int(cont) == self.preferred[pair] else -3.0, n_tokens=1))
        return out


def test_constrained_verdict_is_the_most_likely_score():
    from pgscore.metrics.judge import RESULT_MARK, judge_pairs_constrained

    judge = _ScoringJudge(preferred=[4, 2])
    verdicts = judge_pairs_constrained(judge, ["Frage eins", "Frage zwei"], ["Antwort", "Answer"], "de")
    assert [v.score for v in verdicts] == [4, 2]
    assert all(v.status == "ok" for v in verdicts)
    assert verdicts[0].feedback.startswith("fluent text number 0.")
    # the probabilities shown in the feedback: exp(-0.1) vs exp(-3.0) for four others
    p_best = math.exp(-0.1) / (math.exp(-0.1) + 4 * math.exp(-3.0))
    assert f"4:{p_best:.2f}" in verdicts[0].feedback
    # every context is the rendered chat + feedback + " [RESULT] ", scored with the five digits
    assert [c for _, c in judge.requests[:5]] == ["1", "2", "3", "4", "5"]
    assert all(ctx.startswith("<|user|>") and ctx.endswith(RESULT_MARK) for ctx, _ in judge.requests)
    assert "Feedback: fluent text number 1." in judge.requests[5][0]


def test_score_only_verdicts_generate_nothing_and_score_right_after_the_prompt():
    """judge_max_tokens 0: no feedback call; each score continues the rendered prompt + "[RESULT] "."""
    from pgscore.metrics.config import MetricsConfig
    from pgscore.metrics.judge import judge_with_config

    class NoChat(_ScoringJudge):
        def chat(self, conversations, params):
            raise AssertionError("a score-only verdict must not generate")

    judge = NoChat(preferred=[5, 1])
    cfg = MetricsConfig(judge="fake:judge", judge_mode="constrained", judge_max_tokens=0)
    verdicts = judge_with_config(judge, ["Frage eins", "Frage zwei"], ["Antwort", "Answer"], "de", cfg)
    assert [v.score for v in verdicts] == [5, 1] and all(v.status == "ok" for v in verdicts)
    assert len(judge.requests) == 10
    assert all(ctx.endswith("<|assistant|>[RESULT] ") for ctx, _ in judge.requests)
    # with feedback (the default) the same judge writes it first
    fb = _ScoringJudge(preferred=[5, 1])
    judge_with_config(fb, ["Frage eins", "Frage zwei"], ["Antwort", "Answer"], "de",
                      MetricsConfig(judge="fake:judge", judge_mode="constrained", judge_max_tokens=8))
    assert all("Feedback: fluent text" in ctx for ctx, _ in fb.requests)


@pytest.mark.parametrize("mode", ["auto", "generate"])
def test_score_only_needs_constrained_mode(mode):
    from pydantic import ValidationError

    from pgscore.metrics.config import MetricsConfig

    with pytest.raises(ValidationError, match="judge_mode: constrained"):
        MetricsConfig(judge="tiny:smollm2-135m", judge_mode=mode, judge_max_tokens=0)


@pytest.mark.slow
def test_constrained_verdict_on_a_real_tiny_judge(smollm_model):
    from pgscore.metrics.judge import judge_pairs_constrained, judge_params

    verdicts = judge_pairs_constrained(smollm_model, ["Nenne die Hauptstadt von Deutschland."] * 2,
                                       ["Die Hauptstadt ist Berlin.", "Banana blue the the."], "de",
                                       judge_params(max_tokens=8))
    assert all(v.status == "ok" and v.score in (1, 2, 3, 4, 5) for v in verdicts)
    assert all("p(score)" in v.feedback for v in verdicts)


def test_raw_rendering_can_be_forced_for_servers_without_a_chat_template():
    judge = ScriptedJudge(["Feedback: Natürlich. [RESULT] 4", '{"feedback": "gut", "score": 5}'])  # says chat
    (v,) = judge_pairs(judge, ["Frage"], ["Antwort"], "de", rendering="raw")
    kind, prompts, _ = judge.calls[0]
    assert kind == "complete" and prompts == [build_raw("Frage", "Antwort", "de")] and v.score == 4
    (v,) = judge_pairs(judge, ["Frage"], ["Antwort"], "de", structured=True, rendering="raw")
    kind, prompts, params = judge.calls[1]
    assert prompts == [build_raw("Frage", "Antwort", "de", structured=True)] and params.json_schema is not None
    assert v.score == 5
    with pytest.raises(ValueError, match="auto, chat or raw"):
        judge_pairs(judge, ["a"], ["b"], "de", rendering="plain")


def test_constrained_verdict_renders_the_paper_chat_with_its_system_turn():
    from pgscore.metrics.judge import RESULT_MARK, judge_pairs_constrained

    class Rendering(_ScoringJudge):
        def render_chat(self, conversation):
            return "".join(f"<|{m['role']}|>{m['content']}" for m in conversation) + "<|assistant|>"

    judge = Rendering(preferred=[3])
    (v,) = judge_pairs_constrained(judge, ["Frage"], ["Antwort"], "de")
    ctx = judge.requests[0][0]
    system, user = (m["content"] for m in build_messages("Frage", "Antwort", "de"))
    assert ctx == f"<|system|>{system}<|user|>{user}<|assistant|>Feedback: fluent text number 0.{RESULT_MARK}"
    assert v.score == 3
