"""LM-judge score: a 1–5 grade of each (instruction, response) pair with feedback.

The prompt is M-Prometheus's absolute-grading format (task description, the instruction, the response, a
score rubric, then ``Feedback: ... [RESULT] N``), rendered from the template set's ``judge*.j2`` files
(``pgscore/synthesis/templates.py``; the ``paper`` preset carries the paper's rubric criteria: fluency and
naturalness in the target language, grammar and cultural fit, instruction following). Three renderings:

- chat (judges with a chat template): ``judge_system.j2`` as the system turn + ``judge.j2`` as the user turn;
- raw (judges served without one): ``judge_raw.j2``, the system text and the prompt as one document that ends
  in ``###Feedback:`` for the judge to continue;
- JSON (``structured=True``, servers with structured output): ``judge_json.j2`` plus a JSON schema.

The judge runs through any :class:`~pgscore.models.base.LanguageModel` at temperature 0.
:func:`parse_verdict` is strict about what counts as a score: anything it cannot read as one integer
1–5 gets a non-``ok`` status and no score (it is counted and left out of the mean, never scored 1).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

from pgscore.models.base import Conversation, Generation, LanguageModel, SamplingParams

MIN_SCORE, MAX_SCORE = 1, 5
FEEDBACK_MAX_CHARS = 2000

OK = "ok"
STATUSES = (OK, "empty", "unparsed", "ambiguous", "out_of_range", "error")

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        "feedback": {"type": "string"},
        "score": {"type": "integer", "minimum": MIN_SCORE, "maximum": MAX_SCORE},
    },
    "required": ["feedback", "score"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Verdict:
    score: int | None
    feedback: str
    status: str  # one of STATUSES; score is None unless "ok"
    raw: str = ""


def language_name(code: str) -> str:
    """English name of a language code (``"id" -> "Indonesian"``); the code itself if unknown."""
    from pgscore.languages import english_name

    return english_name(code)


def _vars(instruction: str, response: str, language: str) -> dict[str, Any]:
    name = language_name(language) if len(language) <= 8 else language
    return {"language": name, "instruction": instruction.strip(), "response": response.strip()}


def _templates(templates: Any):
    from pgscore.synthesis.templates import load_templates

    return load_templates(templates)


def rubric(language: str, templates: Any = None) -> str:
    """The score rubric (``judge_rubric.j2``) for ``language`` (a code or a name)."""
    return _templates(templates).render("judge_rubric.j2", **_vars("", "", language))


def build_prompt(instruction: str, response: str, language: str, structured: bool = False,
                 templates: Any = None) -> str:
    """The judge's user prompt for one pair (``judge.j2``, or ``judge_json.j2`` when ``structured``);
    ``language`` is a code or a name; ``templates``: a preset name, a directory or a loaded set."""
    name = "judge_json.j2" if structured else "judge.j2"
    return _templates(templates).render(name, **_vars(instruction, response, language))


def build_messages(instruction: str, response: str, language: str, structured: bool = False,
                   templates: Any = None) -> Conversation:
    """The chat rendering: ``judge_system.j2`` (left out when it renders empty) + the user prompt."""
    t = _templates(templates)
    system = t.render("judge_system.j2", **_vars(instruction, response, language)).strip()
    user = build_prompt(instruction, response, language, structured, t)
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def build_raw(instruction: str, response: str, language: str, structured: bool = False,
              templates: Any = None) -> str:
    """The raw rendering (``judge_raw.j2``) for judges without a chat template: one document to continue."""
    return _templates(templates).render("judge_raw.j2", structured=structured,
                                        **_vars(instruction, response, language))


def _use_chat(model: LanguageModel, rendering: str) -> bool:
    if rendering not in ("auto", "chat", "raw"):
        raise ValueError(f"judge rendering must be auto, chat or raw, got {rendering!r}")
    return rendering == "chat" or (rendering == "auto" and model.has_chat_template)


# ---------------------------------------------------------------- parsing

_NUM = r"[-+]?\d+(?:[.,]\d+)?"
_RESULT = re.compile(r"\[\s*RESULT\s*\]", re.IGNORECASE)
_AFTER_RESULT = re.compile(
    r"^(?:[\s:=–>*_`\"'(\[{]|-(?=\s))*(?:(?:score|result|rating)\s*[:=]?\s*)?[*_`\"'(\[{]*\s*(" + _NUM + r")\b",
    re.IGNORECASE,
)
_KEYWORD = re.compile(
    r"\b(?:score|rating|result|grade|verdict)\b\s*(?:is|of|[:=])?\s*[*_`\"'(\[]*\s*(" + _NUM + r")"
    r"(?:\s*(?:/|out\s+of)\s*5\b)?",
    re.IGNORECASE,
)
_OUT_OF_5 = re.compile(r"(?<![\d.])(" + _NUM + r")\s*(?:/|out\s+of)\s*5\b", re.IGNORECASE)
_BARE = re.compile(r"^[\s*_`\"'(\[]*(" + _NUM + r")\s*(?:/\s*5)?[\s*_`\"')\].!]*$")
_JSON_OBJ = re.compile(r"\{[^{}]*\}", re.DOTALL)


def _to_score(token: str) -> tuple[int | None, str]:
    value = float(token.replace(",", "."))
    if value != int(value):
        return None, "unparsed"
    value = int(value)
    if not MIN_SCORE <= value <= MAX_SCORE:
        return None, "out_of_range"
    return value, OK


def _clean_feedback(text: str) -> str:
    text = re.sub(r"^\s*(?:#+\s*)?feedback\s*:\s*", "", text.strip(), flags=re.IGNORECASE)
    return text.strip()[:FEEDBACK_MAX_CHARS]


def _from_json(text: str) -> Verdict | None:
    for m in reversed(_JSON_OBJ.findall(text)):
        try:
            obj = json.loads(m)
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        key = next((k for k in ("score", "result", "rating", "grade") if k in obj), None)
        if key is None:
            continue
        fb = str(obj.get("feedback") or obj.get("explanation") or obj.get("reason") or "")[:FEEDBACK_MAX_CHARS]
        val = obj[key]
        if isinstance(val, bool) or not isinstance(val, (int, float, str)) or not re.fullmatch(_NUM, str(val).strip()):
            return Verdict(None, fb, "unparsed", text)
        score, status = _to_score(str(val).strip())
        return Verdict(score, fb, status, text)
    return None


def parse_verdict(text: str | None) -> tuple[int | None, str, str]:
    """``(score or None, feedback, status)`` from a judge's output (see module docstring)."""
    v = parse_verdict_full(text)
    return v.score, v.feedback, v.status


def parse_verdict_full(text: str | None) -> Verdict:
    raw = text or ""
    body = raw.replace("</s>", " ").replace("<eos>", " ").replace("<|im_end|>", " ").strip()
    if not body:
        return Verdict(None, "", "empty", raw)

    # 1. the requested format: the number right after the last [RESULT]
    marks = list(_RESULT.finditer(body))
    if marks:
        last = marks[-1]
        feedback = _clean_feedback(body[: last.start()])
        m = _AFTER_RESULT.match(body[last.end():])
        if not m:
            return Verdict(None, feedback, "unparsed", raw)
        score, status = _to_score(m.group(1))
        return Verdict(score, feedback, status, raw)

    # 2. JSON {"score": N, "feedback": ...}
    if "{" in body:
        v = _from_json(body)
        if v is not None:
            return Verdict(v.score, v.feedback, v.status, raw)

    # 3. the whole answer is a number ("4", "**4**", "4/5")
    m = _BARE.match(body)
    if m:
        score, status = _to_score(m.group(1))
        return Verdict(score, "", status, raw)

    # 4. "Score: 4/5", "rating of 4", "4 out of 5": all such mentions must agree
    hits = [h.group(1) for h in _KEYWORD.finditer(body)] or [h.group(1) for h in _OUT_OF_5.finditer(body)]
    if hits:
        values = {float(h.replace(",", ".")) for h in hits}
        feedback = _clean_feedback(_KEYWORD.sub("", body) if _KEYWORD.search(body) else body)
        if len(values) > 1:
            return Verdict(None, feedback, "ambiguous", raw)
        score, status = _to_score(hits[-1])
        return Verdict(score, feedback, status, raw)

    # 5. free text with stray numbers: no guessing
    return Verdict(None, _clean_feedback(body), "unparsed", raw)


# ---------------------------------------------------------------- running


def judge_params(max_tokens: int = 512, structured: bool = False, seed: int | None = 0) -> SamplingParams:
    """Greedy decoding; a JSON schema for backends with structured output."""
    return SamplingParams(temperature=0.0, top_p=1.0, max_tokens=max_tokens, seed=seed,
                          json_schema=VERDICT_SCHEMA if structured else None)


def judge_pairs(
    model: LanguageModel,
    instructions: Sequence[str],
    responses: Sequence[str],
    language: str | Sequence[str],
    params: SamplingParams | None = None,
    structured: bool = False,
    templates: Any = None,
    rendering: str = "auto",
) -> list[Verdict]:
    """Grade each (instruction, response) pair in one batched call; failed calls get status ``error``.
    ``language``: one code for all pairs, or one per pair; ``templates``: the template set (default
    ``paper``); ``rendering``: ``chat``, ``raw`` (a judge served without a chat template: the document goes
    to ``complete``) or ``auto`` (chat when the model has a chat template)."""
    if len(instructions) != len(responses):
        raise ValueError("instructions and responses differ in length")
    langs = [language] * len(instructions) if isinstance(language, str) else list(language)
    if len(langs) != len(instructions):
        raise ValueError("one language per pair expected")
    params = params or judge_params(structured=structured)
    t = _templates(templates)
    items = list(zip(instructions, responses, langs))
    if _use_chat(model, rendering):
        gens = model.chat([build_messages(i, r, lg, structured, t) for i, r, lg in items], params)
    else:
        gens = model.complete([build_raw(i, r, lg, structured, t) for i, r, lg in items], params)
    out = []
    for g in gens:
        if g.error:
            out.append(Verdict(None, "", "error", g.error))
        else:
            out.append(parse_verdict_full(g.text))
    return out


def judge_with_config(judge: LanguageModel, instructions: Sequence[str], responses: Sequence[str],
                      language: str | Sequence[str], cfg: Any = None) -> list[Verdict]:
    """Grade as a ``MetricsConfig`` says (the measure stage and the calibration both grade through this):
    ``judge_mode`` ``constrained``, ``generate`` or ``auto`` (constrained when the judge can render its chat
    prompt, i.e. a local backend), ``judge_max_tokens`` (0: constrained score-only verdicts),
    ``judge_structured``, ``judge_templates``, ``judge_rendering``."""
    mode = getattr(cfg, "judge_mode", "auto")
    structured = bool(getattr(cfg, "judge_structured", False))
    max_tokens = int(getattr(cfg, "judge_max_tokens", 512))
    params = judge_params(max_tokens=max(max_tokens, 1), structured=structured)
    templates = getattr(cfg, "judge_templates", None)
    rendering = getattr(cfg, "judge_rendering", "auto")
    constrained = mode == "constrained" or (
        mode == "auto" and judge.render_chat([{"role": "user", "content": "x"}]) is not None)
    if constrained:
        return judge_pairs_constrained(judge, instructions, responses, language, params, templates=templates,
                                       rendering=rendering, feedback=max_tokens > 0)
    if max_tokens < 8:
        raise ValueError(f"judge_max_tokens {max_tokens}: a judge that writes its verdict needs 8 or more tokens "
                         "(0 works only with constrained verdicts, judge_mode: constrained)")
    return judge_pairs(judge, instructions, responses, language, params, structured, templates=templates,
                       rendering=rendering)


# ---------------------------------------------------------------- constrained verdicts (log-likelihood)

RESULT_MARK = " [RESULT] "


def judge_pairs_constrained(
    model: LanguageModel,
    instructions: Sequence[str],
    responses: Sequence[str],
    language: str | Sequence[str],
    params: SamplingParams | None = None,
    templates: Any = None,
    rendering: str = "auto",
    feedback: bool = True,
) -> list[Verdict]:
    """Grade with the verdict constrained to an integer 1–5: the judge writes its feedback (generation
    stopped at ``[RESULT]``), then each score ``1``…``5`` is scored as the continuation of
    ``prompt + feedback + " [RESULT] "`` and the most likely one is the verdict.

    Needs a backend that can render its chat prompt and score continuations (local models); small judges
    that never produce the ``[RESULT] N`` format still give a real verdict this way. The feedback keeps a
    note of the score distribution (``p(1..5)``).

    ``feedback=False`` (``judge_max_tokens: 0``): no feedback is written; each score is scored right after the
    prompt as the continuation of ``"[RESULT] "``: one forward pass per pair instead of a generation and a
    scoring pass, for judges too small to write feedback that informs their score."""
    import math

    langs = [language] * len(instructions) if isinstance(language, str) else list(language)
    if not (len(instructions) == len(responses) == len(langs)):
        raise ValueError("instructions, responses and languages differ in length")
    base = params or judge_params()
    params = base.model_copy(update={"stop": tuple(dict.fromkeys((*base.stop, "[RESULT]")))})
    t = _templates(templates)
    items = list(zip(instructions, responses, langs))
    if _use_chat(model, rendering):
        convs = [build_messages(i, r, lg, templates=t) for i, r, lg in items]
        contexts = [model.render_chat(c) for c in convs]
        if any(c is None for c in contexts):
            raise ValueError(f"{model.name} cannot render chat prompts: use judge_mode: generate")
        gens = model.chat(convs, params) if feedback else None
    else:  # base models read the raw rendering as a document, as in judge_pairs
        contexts = [build_raw(i, r, lg, templates=t) for i, r, lg in items]
        gens = model.complete(contexts, params) if feedback else None
    mark = RESULT_MARK if feedback else RESULT_MARK.lstrip()
    if gens is None:
        gens = [Generation(text="") for _ in contexts]
    scores = range(MIN_SCORE, MAX_SCORE + 1)
    requests, where = [], []
    for i, (ctx, g) in enumerate(zip(contexts, gens)):
        if g.error:
            continue
        feedback = g.text.split("[RESULT]")[0].rstrip()
        where.append((i, feedback))
        requests += [(ctx + feedback + mark, str(s)) for s in scores]
    lls = model.loglikelihood(requests) if requests else []
    out: list[Verdict] = [Verdict(None, "", "error", g.error or "") for g in gens]
    for n, (i, feedback) in enumerate(where):
        lp = [lls[n * len(scores) + k].logprob for k in range(len(scores))]
        top = max(lp)
        probs = [math.exp(x - top) for x in lp]
        total = sum(probs)
        probs = [p / total for p in probs]
        best = int(scores[max(range(len(scores)), key=lambda k: lp[k])])
        dist = " ".join(f"{s}:{p:.2f}" for s, p in zip(scores, probs))
        text = _clean_feedback(feedback.removeprefix("Feedback:").strip())
        out[i] = Verdict(best, f"{text} (p(score) {dist})".strip(), OK, gens[i].text)
    return out
