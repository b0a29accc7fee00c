"""Hub loaders tell the truth: each datasets.load_dataset failure maps to its own one-line error.

Script-only, missing config and missing split are triggered for real by local folders in the hub's layout
(``datasets`` treats a folder path like a repo); gated and no-network are the real exception types with
the messages datasets 5 raises, injected with monkeypatch (no network here)."""

from pathlib import Path

import datasets
import pytest
from datasets.exceptions import DatasetNotFoundError

from pgscore.evaluation import registry
from pgscore.evaluation.registry import (
    HubConfigError,
    HubGatedError,
    HubNotFoundError,
    HubOfflineError,
    HubScriptError,
    HubSource,
    HubSplitError,
    get_task,
    load_hub,
)

FIX = Path(__file__).parent / "fixtures" / "eval"
MRB = FIX / "hub_m_rewardbench"


@pytest.fixture
def hub_on(monkeypatch, tmp_path):
    """Pretend the hub is reachable (the DNS probe), keep datasets' cache in tmp."""
    for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setattr(registry, "_HUB_OK", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")


def test_current_layout_loads(hub_on):
    rows = load_hub(str(MRB), "deu_Latn", "test")
    assert len(rows) == 12 and {"id", "language", "prompt", "chosen", "rejected", "chosen_model", "rejected_model",
                                "source"} == set(rows[0])


def test_missing_config_and_split_are_distinct(hub_on):
    with pytest.raises(HubConfigError, match="no such config.*fra_Latn.*Available: \\['deu_Latn'\\]"):
        load_hub(str(MRB), "fra_Latn", "test")
    with pytest.raises(HubSplitError, match="no such split.*filtered"):
        load_hub(str(MRB), "deu_Latn", "filtered")


def test_script_only_dataset(hub_on):
    with pytest.raises(HubScriptError, match="script-only dataset"):
        load_hub(str(FIX / "hub_script_only"), None, "test")


def test_gated_and_offline(hub_on, monkeypatch):
    def gated(*a, **k):
        raise DatasetNotFoundError("Dataset 'CohereLabs/Global-MMLU-Lite' is a gated dataset on the Hub. "
                                   "You must be authenticated to access it.")

    monkeypatch.setattr(datasets, "load_dataset", gated)
    with pytest.raises(HubGatedError, match="gated on the hub.*hf auth login"):
        load_hub(HubSource("CohereLabs/Global-MMLU-Lite"), "de", "test")

    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'CohereLabs/Global-MMLU-Lite' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(HubOfflineError, match="hub unreachable"):
        load_hub(HubSource("CohereLabs/Global-MMLU-Lite"), "de", "test")


def test_renamed_repo_falls_back_to_alias_with_pinned_revision(hub_on, monkeypatch):
    calls = []

    def fake(repo, name, split, revision):
        calls.append((repo, revision))
        if repo.startswith("CohereLabs/"):
            raise DatasetNotFoundError(f"Dataset '{repo}' doesn't exist on the Hub or cannot be accessed.")
        return [{"x": 1}]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    src = HubSource("CohereLabs/X", revision="abc123", aliases=("CohereForAI/X",))
    assert load_hub(src, "de", "test") == [{"x": 1}]
    assert calls == [("CohereLabs/X", "abc123"), ("CohereForAI/X", "abc123")]
    calls.clear()
    with pytest.raises(HubNotFoundError):
        load_hub(HubSource("CohereLabs/Y"), "de", "test")


def test_offline_hub_falls_back_to_standins_with_cause(hub_on, monkeypatch):
    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'CohereLabs/Global-MMLU-Lite' on the Hub (ConnectError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    from pgscore.errors import DataMissingError

    with pytest.raises(DataMissingError) as exc:  # de has no local copy: the DataMissingError carries the cause
        get_task("global_mmlu_lite").load("de", hub=True)
    assert "CohereLabs/Global-MMLU-Lite" in str(exc.value) and "hub unreachable" in str(exc.value)


def test_m_rewardbench_from_todays_hub_layout(hub_on, monkeypatch):
    from pgscore.evaluation import m_rewardbench

    monkeypatch.setattr(m_rewardbench, "HUB", HubSource(str(MRB)))
    d = get_task("m_rewardbench").load("de", hub=True)
    assert len(d.examples) == 12 and d.source.endswith("/deu_Latn/test@main")
    with pytest.raises(HubConfigError):  # the hub answers but has no config for this language
        get_task("m_rewardbench").load("fr", hub=True)


def test_languages_offered_where_the_hub_has_them():
    t = get_task("global_mmlu_lite")
    assert t.covers("de") and t.covers("ar") and t.covers("cy")
    assert not t.covers("ru")
    # no ms/vi configs on the hub: offered only with a local SEA-HELM copy (tl has one here)
    from pgscore.evaluation.global_mmlu import _seahelm_file

    for lang in ("ms", "vi", "tl"):
        assert t.covers(lang) == (_seahelm_file(lang) is not None)


def test_cli_exits_2_with_one_line(hub_on, monkeypatch, capsys, tmp_path):
    from pgscore.cli import main

    def gated(*a, **k):
        raise DatasetNotFoundError("Dataset 'CohereLabs/Global-MMLU-Lite' is a gated dataset on the Hub.")

    monkeypatch.setattr(datasets, "load_dataset", gated)
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--model", "fake:x", "--languages", "de", "--benchmarks", "global_mmlu_lite",
              "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "gated on the hub" in err and "Traceback" not in err
    assert len([ln for ln in err.strip().splitlines() if ln.strip()]) == 1


def test_global_mmlu_and_mgsm_from_todays_hub_layout(hub_on, monkeypatch):
    from pgscore.evaluation import global_mmlu, mgsm

    monkeypatch.setattr(global_mmlu, "HUB", HubSource(str(FIX / "hub_global_mmlu_lite")))
    d = get_task("global_mmlu_lite").load("de", hub=True)
    assert len(d.examples) == 4 and d.standin is None and d.examples[1]["gold"] == 1
    assert d.examples[0]["example_id"] == "high_school_geography/test/1"
    monkeypatch.setattr(mgsm, "HUB", HubSource(str(FIX / "hub_mgsm")))
    monkeypatch.setattr(mgsm, "data_dir", lambda required=False: None)  # no local copy: the hub path
    t = get_task("mgsm")
    m = t.load("de", hub=True)
    assert len(m.examples) == 3 and m.examples[0]["answer"] == "18" and m.extra["numbers"] == [11, 29, 39, 9, 33]
    prompts, q_prefix, phrase = t.prompts(m)
    assert q_prefix == "Frage:" and phrase == "Die Antwort ist " and prompts[0].count("Frage:") == 6
    # the real juletxara/mgsm is a dataset script: datasets>=4 refuses it, and says so in one line
    monkeypatch.setattr(mgsm, "HUB", HubSource(str(FIX / "hub_script_only")))
    with pytest.raises(HubScriptError):
        t.load("de", hub=True)
