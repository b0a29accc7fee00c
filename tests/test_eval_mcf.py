"""Global-MMLU Lite / M-RewardBench MCF prompts equal lighteval's own prompt function (lighteval from PyPI,
scripts/install_lighteval.sh), plus a hand-written expected prompt that needs no lighteval."""

import json
from pathlib import Path
from string import ascii_uppercase

import pytest

from pgscore.evaluation.mcf import LIGHTEVAL_LANGUAGE, LITERALS, NO_WORDS, literals_for, mcf_prompt
from pgscore.evaluation.registry import TaskData, get_task
from pgscore.paths import data_dir

FIX = Path(__file__).parent / "fixtures" / "eval"
HUB_ROWS = FIX / "global_mmlu_lite_de_hub.jsonl"

try:
    from lighteval.tasks.templates.multichoice import get_mcq_prompt_function
    from lighteval.tasks.templates.utils.formulation import MCFFormulation
    from lighteval.tasks.templates.utils.translation_literals import TRANSLATION_LITERALS
    from lighteval.utils.language import Language

    HAVE_LIGHTEVAL = True
except Exception:  # noqa: BLE001 - any import problem means "not installed here"
    HAVE_LIGHTEVAL = False
needs_lighteval = pytest.mark.skipif(not HAVE_LIGHTEVAL, reason="lighteval not installed (scripts/install_lighteval.sh)")


def _rows():
    return [json.loads(x) for x in HUB_ROWS.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_hand_written_expected_prompt():
    query, conts = mcf_prompt("Was ist 15 geteilt durch 3", ["3", "4", "5", "6."], "de")
    assert query == "Frage: Was ist 15 geteilt durch 3\n A. 3\n B. 4\n C. 5\n D. 6.\nAntwort:"
    assert conts == [" A", " B", " C", " D"]
    query, conts = mcf_prompt("日本の首都は?", ["東京", "大阪"], "ja")  # no spaces, full-width marks
    assert query == "質問：日本の首都は？\nA。東京\nB。大阪\n回答：" and conts == ["A", "B"]
    lit, why = literals_for("ko")
    assert lit == LITERALS["en"] and "English words" in why


def _authors_prompt_fn(language):
    # ljvmiranda921/polyglot-teachers scripts/lighteval_tasks.py GLOBAL_MMLU_LITE adapter
    return get_mcq_prompt_function(
        language,
        lambda line: {"question": line["question"],
                      "choices": [line["option_a"], line["option_b"], line["option_c"], line["option_d"]],
                      "gold_idx": ascii_uppercase.index(line["answer"])},
        formulation=MCFFormulation(),
    )


@needs_lighteval
def test_global_mmlu_prompt_equals_lighteval_hub_rows():
    task = get_task("global_mmlu_lite")
    task.set_formulation("mcf")
    d = task.load("de", hub=False, local=str(HUB_ROWS))
    contexts, conts = task.prompts(d, "de")
    fn = _authors_prompt_fn(Language.GERMAN)
    for row, ctx, cont, ex in zip(_rows(), contexts, conts, d.examples):
        doc = fn(row, "global_mmlu_lite:de")
        assert ctx == doc.query
        assert cont == list(doc.choices)
        assert doc.gold_index == [ex["gold"]]


@needs_lighteval
@pytest.mark.skipif(data_dir(required=False) is None, reason="offline data folder not present")
@pytest.mark.parametrize("lang,language", [("id", "INDONESIAN"), ("en", "ENGLISH"), ("tl", "TAGALOG")])
def test_global_mmlu_prompt_equals_lighteval_seahelm(lang, language):
    task = get_task("global_mmlu_lite")
    task.set_formulation("mcf")
    d = task.load(lang, hub=False)
    d = TaskData(d.examples[:60], d.source)
    contexts, conts = task.prompts(d, lang)
    fn = _authors_prompt_fn(getattr(Language, language))
    for ex, ctx, cont in zip(d.examples, contexts, conts):
        row = {"question": ex["question"], "answer": "ABCD"[ex["gold"]],
               **{f"option_{c}": o for c, o in zip("abcd", ex["options"])}}
        doc = fn(row, "t")
        assert (ctx, cont) == (doc.query, list(doc.choices))


@needs_lighteval
def test_literals_table_equals_lighteval():
    for code, lit in LITERALS.items():
        ref = TRANSLATION_LITERALS[getattr(Language, LIGHTEVAL_LANGUAGE[code])]
        for f in ("question_word", "answer", "colon", "full_stop", "question_mark", "comma", "sentence_space"):
            assert getattr(lit, f) == object.__getattribute__(ref, f), (code, f)
    for code in NO_WORDS:  # lighteval itself raises for these: no words to compare
        ref = TRANSLATION_LITERALS[getattr(Language, LIGHTEVAL_LANGUAGE[code])]
        assert object.__getattribute__(ref, "question_word") is None


@needs_lighteval
def test_m_rewardbench_prompt_equals_lighteval():
    from pgscore.evaluation.m_rewardbench import JUDGE_PROMPT

    task = get_task("m_rewardbench")
    task.set_formulation("mcf")
    d = task.load("de", hub=False, local=str(FIX / "m_rewardbench_deu_current.jsonl"))
    contexts, conts, golds = task.prompts(d, "de", seed=0)
    for ex, ctx, cont, g in zip(d.examples, contexts, conts, golds):
        pair = [ex["chosen"], ex["rejected"]] if g == 0 else [ex["rejected"], ex["chosen"]]
        # the authors' get_mrewardbench_eval_instances with our seeded order in place of random.shuffle
        fn = get_mcq_prompt_function(Language.GERMAN, lambda line: {
            "question": JUDGE_PROMPT.format(src_lang=line["language"], tgt_lang=line["language"], question=line["prompt"]),
            "choices": pair, "gold_idx": g}, formulation=MCFFormulation())
        doc = fn({"language": ex["language"], "prompt": ex["prompt"]}, "mrewardbench_mcf:de")
        assert (ctx, cont) == (doc.query, list(doc.choices))


def test_cloze_formulation_kept_as_option():
    task = get_task("global_mmlu_lite")
    task.set_formulation("cloze")
    d = task.load("de", hub=False, local=str(HUB_ROWS))
    contexts, conts = task.prompts(d, "de")
    assert contexts[0] == "Frage: Welcher Fluss fließt durch Wien?\nAntwort:"
    assert conts[0] == [" Die Donau", " Der Rhein", " Die Elbe", " Die Seine"]
