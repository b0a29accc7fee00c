"""Loaders on the real offline files under data_dir() and the M-RewardBench fixture."""

from pathlib import Path

import pytest

from pgscore.errors import DataMissingError
from pgscore.evaluation.mgsm import answer_phrase, split_prefix
from pgscore.evaluation.registry import get_task
from pgscore.paths import data_dir

FIXTURE = Path(__file__).parent / "fixtures" / "m_rewardbench_sample.jsonl"
needs_data = pytest.mark.skipif(data_dir(required=False) is None, reason="offline data folder not present")


@needs_data
def test_global_mmlu_seahelm_id():
    d = get_task("global_mmlu_lite").load("id", hub=False)
    assert len(d.examples) == 400 and d.standin is None and "SEA-HELM" in d.source
    first = d.examples[0]
    assert first["example_id"] == "astronomy/test/58"
    assert first["options"][1] == "Lebih tinggi di langit" and first["gold"] == 1  # label B
    assert {e["gold"] for e in d.examples} == {0, 1, 2, 3}


@needs_data
def test_global_mmlu_standins():
    ja = get_task("global_mmlu_lite").load("ja", hub=False)
    assert ja.standin and len(ja.examples) == 285 and ja.examples[0]["options"] == ["0", "1", "2", "3"]
    assert ja.examples[0]["gold"] == 1
    ar = get_task("global_mmlu_lite").load("ar", hub=False)
    assert "AceGPT" in ar.standin and len(ar.examples) == 14042
    with pytest.raises(DataMissingError, match="CohereLabs/Global-MMLU-Lite"):
        get_task("global_mmlu_lite").load("de", hub=False)


@needs_data
def test_mgsm_local():
    t = get_task("mgsm")
    d = t.load("de", hub=False)
    assert len(d.examples) == 250 and d.examples[0]["answer"] == "18"
    prompts, q_prefix, phrase = t.prompts(d)
    assert q_prefix == "Frage:" and phrase == "Die Antwort ist "
    assert prompts[0].endswith("Frage: " + d.examples[0]["question"] + "\nSchritt-für-Schritt-Antwort:")
    assert prompts[0].count("Frage:") == 6  # 5 shots + the question
    assert not t.covers("ar") and not t.covers("id") and not t.covers("cs")


def test_mgsm_prefix_helpers():
    assert split_prefix("問題：ロジャーは") == ("問題：", "ロジャーは")
    assert answer_phrase("5+6=11。答えは11です。", 11) == "答えは"
    assert answer_phrase("5 + 6 = 11 คำตอบคือ 11", 11) == "คำตอบคือ "
    assert answer_phrase("5 + 6 = 11. Ответ — 11.", 11) == "Ответ — "


def test_m_rewardbench_fixture_and_missing():
    t = get_task("m_rewardbench")
    d = t.load("id", hub=False, local=str(FIXTURE))
    assert len(d.examples) == 9  # 10 Indonesian rows, the translation subset is dropped
    assert {e["category"] for e in d.examples} == {"Chat", "Chat Hard", "Safety", "Reasoning"}
    de = t.load("de", hub=False, local=str(FIXTURE))
    assert len(de.examples) == 3
    with pytest.raises(DataMissingError, match="multilingual-reward-bench"):
        t.load("id", hub=False)
    assert not t.covers("en") and not t.covers("tl")


@needs_data
def test_subset_mapping_matches_meta_file():
    import json

    from pgscore.evaluation.m_rewardbench import SUBSET_MAPPING

    meta = json.loads((data_dir() / "m_rewardbench_meta" / "weighting_constants.json").read_text())
    assert meta["SUBSET_MAPPING"] == SUBSET_MAPPING
