"""Prompt building for the three methods from the Jinja2 template sets, chat and completion renderings.

Golden files (tests/fixtures/templates/):
- ``legacy/``: written by pgscore's pre-template Python prompt code (git 996ab1e); the ``legacy`` preset must
  reproduce them byte for byte.
- ``paper/``: the ``paper`` preset for one fixed seed draw; the tests below also check each one against the
  paper's description of the method (k = 3 seed pairs as prompt/response blocks, the 10 task categories to
  choose from, a JSON pair, no length cap; Respond with and without a meta-instruction; Translate as before).
Regenerate the paper files after a deliberate template change with ``PGSCORE_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from pgscore.errors import PgScoreError
from pgscore.synthesis.config import TASK_TYPES
from pgscore.synthesis.parsing import parse_completion_pair, parse_json_pair
from pgscore.synthesis.prompts import Example, render, sample_indices, system_prompt
from pgscore.synthesis.templates import TEMPLATE_FILES, TemplateSet, load_templates, template_hash

GOLDEN = Path(__file__).parent / "fixtures" / "templates"
UPDATE = os.environ.get("PGSCORE_UPDATE_GOLDEN") == "1"

EX = [
    Example("s:de:1", "Wie spät ist es?", "Es ist drei Uhr.", "What time is it?"),
    Example("s:de:2", "Was ist 2 + 3?", "2 + 3 = 5.", "What is 2 + 3?"),
    Example("s:de:3", "Nenne eine Farbe.", "Blau.", None),
]
SPIDER = "How many legs does a spider have?"


def _cases(preset: str) -> dict[str, object]:
    """Every method x rendering for fixed inputs: messages (chat) or text (completion)."""
    t = load_templates(preset)
    return {
        "generate_chat.json": render("generate", "chat", "de", examples=EX, task_type="math", templates=t).messages,
        "generate_completion.txt": render("generate", "completion", "de", examples=EX, templates=t).text,
        "translate_chat.json": render("translate", "chat", "ja", source_prompt=SPIDER, templates=t).messages,
        "translate_completion.txt": render("translate", "completion", "de", examples=EX, source_prompt=SPIDER,
                                           templates=t).text,
        "respond_chat.json": render("respond", "chat", "id", source_prompt="Apa ibu kota Jepang?",
                                    templates=t, respond_instruction=preset == "paper").messages,
        "respond_completion.txt": render("respond", "completion", "id", examples=EX[:2],
                                         source_prompt="Apa ibu kota Jepang?", templates=t).text,
    }


def _golden(preset: str, name: str, got: object) -> object:
    path = GOLDEN / preset / name
    text = json.dumps(got, ensure_ascii=False, indent=1) + "\n" if name.endswith(".json") else got
    if UPDATE and preset == "paper":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    want = path.read_text(encoding="utf-8")
    return json.loads(want) if name.endswith(".json") else want


@pytest.mark.parametrize("name", list(_cases("legacy")))
def test_legacy_preset_reproduces_the_old_prompts_byte_for_byte(name):
    got = _cases("legacy")[name]
    assert got == _golden("legacy", name, got)


@pytest.mark.parametrize("name", list(_cases("paper")))
def test_paper_preset_golden(name):
    got = _cases("paper")[name]
    assert got == _golden("paper", name, got)


def test_paper_generate_matches_the_papers_description():
    r = render("generate", "chat", "de", examples=EX, task_type="math")  # paper is the default preset
    assert r.rendering == "chat" and r.parse == "json" and r.seed_ids == ["s:de:1", "s:de:2", "s:de:3"]
    system, user = (m["content"] for m in r.messages)
    assert [m["role"] for m in r.messages] == ["system", "user"] and "German" in system
    # k = 3 seed pairs as prompt/response blocks, in order, each once
    blocks = re.findall(r"^Prompt: (.*)\nResponse: (.*)$", user, flags=re.M)
    assert blocks == [(e.prompt, e.response) for e in EX]
    # the teacher chooses one of the 10 task categories: all listed, none dictated
    assert len(TASK_TYPES) == 10
    listed = re.findall(r"^   - (.*)$", user, flags=re.M)
    assert listed == list(TASK_TYPES)
    assert "choose its kind from one of these task categories" in user
    # the paper's ten categories (its Figure 10, in order), picked at random and not named in the example
    assert TASK_TYPES[0] == "Logical reasoning / error analysis" and TASK_TYPES[-1] == "Cultural or pragmatic judgment"
    assert "Pick the category at random" in user and "do not name it" in user
    assert r.task_type is None and "Task type: math" not in user
    # a JSON pair, and no length cap anywhere (response length is a main PCA driver in the paper)
    assert 'JSON object that has the keys "prompt" and "response"' in user
    instructions = re.sub(r"^   - .*$|^(Prompt|Response): .*$", "", user, flags=re.M)  # minus categories, pairs
    assert not re.search(r"\b(sentences?|words?|characters?|tokens?|short|brief|concise)\b",
                         instructions + system, re.I)
    assert "German speakers" in user  # culturally appropriate for the target language


def test_paper_respond_both_templates_and_translate_as_legacy():
    with_meta = render("respond", "chat", "id", source_prompt="Apa ibu kota Jepang?")
    bare = render("respond", "chat", "id", source_prompt="Apa ibu kota Jepang?", respond_instruction=False)
    assert with_meta.template == "respond_chat.j2" and bare.template == "respond_bare_chat.j2"
    assert with_meta.messages[1]["content"].endswith("The request:\nApa ibu kota Jepang?")
    assert "in Indonesian" in with_meta.messages[1]["content"] and with_meta.parse == "plain"
    assert bare.messages[1] == {"role": "user", "content": "Apa ibu kota Jepang?"}
    assert bare.messages[0] == with_meta.messages[0]  # the paper's system prompt either way
    # Translate keeps today's user prompt (only the system prompt is the paper preset's)
    paper = render("translate", "chat", "ja", source_prompt=SPIDER)
    legacy = render("translate", "chat", "ja", source_prompt=SPIDER, templates="legacy")
    assert paper.messages[1] == legacy.messages[1] and paper.messages[0] != legacy.messages[0]


def test_legacy_generate_dictates_the_drawn_task_type():
    r = render("generate", "chat", "de", examples=EX, task_type="grammar", templates="legacy")
    assert r.task_type == "grammar" and "Task type: grammar" in r.messages[1]["content"]
    line = [ln for ln in r.messages[1]["content"].splitlines() if ln.startswith("Example 1: ")][0]
    p = parse_json_pair(line)  # the JSON shown is the JSON asked for
    assert (p.prompt, p.response) == (EX[0].prompt, EX[0].response)


def test_completion_renderings_parse_back():
    for preset in ("paper", "legacy"):
        r = render("generate", "completion", "de", examples=EX, templates=preset)
        assert r.text.endswith("\n\nPrompt:") and r.stop == ("\nPrompt:",) and r.parse == "pair"
        p = parse_completion_pair(" Wie heißt du?\nResponse: Lena.\nPrompt:", r.response_label, r.stop)
        assert (p.prompt, p.response) == ("Wie heißt du?", "Lena.")
        c = render("translate", "completion", "de", examples=EX, source_prompt=SPIDER, templates=preset)
        assert c.seed_ids == ["s:de:1", "s:de:2"]  # only examples with an English version
        assert c.text.endswith(f"English: {SPIDER}\nGerman:") and c.response_label == "Answer:"


def test_system_prompt_names_the_language():
    assert "German (Deutsch)" in system_prompt("de", "legacy")
    assert "Japanese (日本語)" in system_prompt("ja", "legacy")
    assert "expert assistant for Indonesian" in system_prompt("id")


def test_values_are_not_template_code():
    ex = [Example("x", "Was ist {{ 7 * 6 }}? {% raw %}", "{# nichts #}", None)]
    user = render("generate", "chat", "de", examples=ex).messages[1]["content"]
    assert "Prompt: Was ist {{ 7 * 6 }}? {% raw %}\nResponse: {# nichts #}" in user


def test_user_directory_overrides_the_paper_preset_file_by_file(tmp_path):
    (tmp_path / "respond_chat.j2").write_text("Bitte antworte auf {{ language }}:\n{{ source_prompt }}\n")
    (tmp_path / "_sig.j2").write_text("(pgscore)")
    (tmp_path / "system.j2").write_text("{% include '_sig.j2' %} {{ language_label }}\n")
    r = render("respond", "chat", "de", source_prompt="Wie geht's?", templates=str(tmp_path))
    assert r.messages == [{"role": "system", "content": "(pgscore) German (Deutsch)"},
                          {"role": "user", "content": "Bitte antworte auf German:\nWie geht's?"}]
    g = render("generate", "chat", "de", examples=EX, templates=str(tmp_path))  # from the paper preset
    assert g.messages[1] == render("generate", "chat", "de", examples=EX).messages[1]
    # an empty system template means no system turn
    (tmp_path / "system.j2").write_text("")
    assert [m["role"] for m in render("respond", "chat", "de", source_prompt="x",
                                      templates=str(tmp_path)).messages] == ["user"]


def test_template_hash_follows_contents_only(tmp_path):
    assert template_hash("paper") == template_hash(None) != template_hash("legacy")
    d = tmp_path / "mine"
    d.mkdir()
    (d / "generate_chat.j2").write_text("A {{ language }}")
    h1 = template_hash(str(d))
    assert h1 != template_hash("paper")
    (d / "notes.txt").write_text("not a template")
    assert template_hash(str(d)) == h1
    (d / "generate_chat.j2").write_text("B {{ language }}")
    h2 = template_hash(str(d))
    assert h2 != h1
    assert load_templates(str(d)).render("generate_chat.j2", language="German") == "B German"  # not stale
    assert len(TemplateSet("paper").files) == len(TEMPLATE_FILES)


def test_bad_template_sets_are_one_line_errors(tmp_path):
    with pytest.raises(PgScoreError, match="template directory not found"):
        load_templates(str(tmp_path / "missing"))
    with pytest.raises(PgScoreError, match="no \\*.j2 files"):
        load_templates(str(tmp_path))
    (tmp_path / "generate.j2").write_text("x")
    with pytest.raises(PgScoreError, match="unknown template file.*generate.j2"):
        load_templates(str(tmp_path))
    (tmp_path / "generate.j2").unlink()
    (tmp_path / "generate_chat.j2").write_text("{{ no_such_variable }}")
    with pytest.raises(PgScoreError, match="generate_chat.j2.*no_such_variable"):
        render("generate", "chat", "de", examples=EX, templates=str(tmp_path))
    (tmp_path / "generate_chat.j2").write_text("{% for x in %}")
    with pytest.raises(PgScoreError, match="TemplateSyntaxError"):
        render("generate", "chat", "de", examples=EX, templates=str(tmp_path))


def test_sample_indices_distinct_reproducible_and_excluding():
    a = sample_indices(np.random.default_rng(7), 26, 3)
    b = sample_indices(np.random.default_rng(7), 26, 3)
    assert a == b and len(set(a)) == 3 and all(0 <= i < 26 for i in a)
    assert len({tuple(sample_indices(np.random.default_rng(s), 26, 3)) for s in range(20)}) > 15
    for seed in range(50):
        got = sample_indices(np.random.default_rng(seed), 5, 3, exclude=2)
        assert len(got) == 3 and 2 not in got and len(set(got)) == 3
    assert sorted(sample_indices(np.random.default_rng(0), 2, 3)) == [0, 1]  # fewer pairs than k
    assert sample_indices(np.random.default_rng(0), 1, 3, exclude=0) == []


DE_SEED = [("Wie viele Bundesländer hat Deutschland?", "Deutschland hat 16 Bundesländer."),
           ("Schreibe einen Satz mit dem Wort „Fernweh“.", "Im Winter packt mich oft das Fernweh."),
           ("Was ist 15 % von 80?", "15 % von 80 sind 12."),
           ("Nenne drei deutsche Flüsse.", "Rhein, Elbe und Donau."),
           ("Was bedeutet „Feierabend“?", "Das Ende des Arbeitstages."),
           ("Korrigiere: „Ich habe gestern ins Kino gegangen.“", "Ich bin gestern ins Kino gegangen."),
           ("Wer schrieb „Faust“?", "Johann Wolfgang von Goethe."),
           ("Wie sagt man höflich, dass man später kommt?", "Entschuldigung, ich komme etwas später.")]


def test_paper_preset_for_a_fixed_seed_through_the_stage_plan():
    """The stage's own plan (seed 0) and renderer: one row per method, golden, and the Generate row shows
    exactly the k = 3 seed pairs the plan drew."""
    import pandas as pd

    from pgscore.config import TeacherConfig
    from pgscore.synthesis.config import SynthesisConfig
    from pgscore.synthesis.stage import plan_rows, render_rows

    seed = pd.DataFrame([{"id": f"s:de:{i}", "language": "de", "prompt": p, "response": r, "source": "test",
                          "prompt_en": None} for i, (p, r) in enumerate(DE_SEED)])
    pool = pd.DataFrame([{"id": "en:0", "language": "en", "prompt": "Why is the sky blue?", "source": "test"}])
    cfg = SynthesisConfig(examples_per_cell=3, seed=0)
    plan = plan_rows([TeacherConfig(name="t", model="tiny:smollm2-135m")], ["de"], seed, pool, cfg)
    rendered = render_rows(plan, seed, pool, cfg, "chat")
    got = {row.method: r.messages for row, r in zip(plan.itertuples(index=False), rendered)}
    assert list(got) == ["generate", "translate", "respond"]
    assert got == _golden("paper", "plan_seed0_de.json", got)
    gen_row = plan[plan["method"] == "generate"].iloc[0]
    shown = re.findall(r"^Prompt: (.*)$", got["generate"][1]["content"], flags=re.M)
    assert shown == [seed.set_index("id").loc[i, "prompt"] for i in gen_row["example_ids"]] and len(shown) == 3
    resp_row = plan[plan["method"] == "respond"].iloc[0]
    assert got["respond"][1]["content"].endswith("\n" + seed.set_index("id").loc[resp_row["source_id"], "prompt"])
    assert "Why is the sky blue?" in got["translate"][1]["content"]
