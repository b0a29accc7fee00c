"""The paper's seed recipe (``seed.recipe: paper``) on fixtures of every source in today's hub schemas.

The fixture files (tests/fixtures/seed_recipe/) plant rows each filter must drop; the expected counts
below are worked out by hand from those files (see the comments). TABLE6 is typed from the paper
(arXiv 2604.11290, Appendix B, Table 6), not from pgscore's code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pgscore.errors import PgScoreError
from pgscore.seed.build import DROP_REASONS, build_seed
from pgscore.seed.config import SeedConfig, SeedSource
from pgscore.seed.presets import resolve
from pgscore.seed.recipes import OTHER_LANGUAGE_QUOTAS, PAPER_LANGUAGES, PAPER_QUOTAS, paper_recipe

FIX = Path(__file__).parent / "fixtures" / "seed_recipe"
QUOTAS = {"aya": 4, "wildchat-4.8m": 3, "helpsteer3": 3, "euroblocks": 3, "cidar": 3, "cendol-v2": 4, "oasst2": 3,
          "tulu3": 3, "gsm8k": 3, "magpie-pro": 2}

# Table 6 of the paper, row by row (columns en, ar, cs, de, es, id, ja; None is "-"), and its printed
# "Total per language" row
TABLE6_COLUMNS = ("en", "ar", "cs", "de", "es", "id", "ja")
TABLE6 = {
    "aya": (None, None, 5000, 241, 3854, 2786, 6259),  # Aya Dataset
    "tulu3": (10000, None, None, None, None, None, None),  # Tülu 3 SFT
    "wildchat-4.8m": (10000, 4660, 1266, 5908, 5900, 7983, 602),  # WildChat 4.8M
    "cidar": (None, 6000, None, None, None, None, None),  # CIDAR
    "cendol-v2": (None, None, None, None, None, 3000, None),  # Cendol v2
    "oasst2": (None, 23, 4, 2328, 8785, 3, 306),  # OpenAssistant 2
    "euroblocks": (None, None, 3813, 12551, 15641, None, 2893),  # EuroBlocks SFT
    "gsm8k": (7473, None, None, None, None, None, None),  # GSM8k (train)
    "helpsteer3": (None, None, None, 462, 778, 156, 534),  # Helpsteer3 (chosen)
    "magpie-pro": (10000, None, None, None, None, None, None),  # Magpie Pro Filtered
}
TABLE6_TOTALS = (30743, 10683, 10083, 21490, 34958, 13928, 10594)

# (source, language) -> (loaded, kept, drops by reason); from the fixture files:
EXPECTED = {
    ("aya", "ar"): (2, 2, {}),
    ("aya", "de"): (4, 2, {"empty": 1, "wrong_language": 1}),  # an empty target; an English prompt labelled deu
    ("aya", "id"): (6, 4, {"quota": 2}),  # six valid rows, quota 4
    ("aya", "tl"): (2, 2, {}),  # Aya's "fil" rows are Tagalog
    ("wildchat-4.8m", "ar"): (1, 1, {}),
    ("wildchat-4.8m", "de"): (2, 1, {"duplicate": 1}),  # repeats an Aya prompt; the Spanish row is not asked for
    ("wildchat-4.8m", "id"): (2, 2, {}),
    ("wildchat-4.8m", "ja"): (2, 1, {"source_filter": 1}),  # an "EnglishTitle:" API-call prompt
    ("helpsteer3", "de"): (2, 2, {}),  # its code (language "python") and English general rows are no language asked
    ("helpsteer3", "id"): (1, 1, {}),
    ("euroblocks", "de"): (4, 2, {"source_filter": 2}),  # two rows from Magpie datasets
    ("cidar", "ar"): (4, 3, {"quota": 1}),
    ("cendol-v2", "id"): (4, 3, {"empty": 1}),  # an empty output
    ("oasst2", "de"): (3, 2, {"source_filter": 1}),  # an assistant message
    ("oasst2", "id"): (1, 1, {}),
    ("tulu3", "en"): (3, 3, {}),  # its German row is labelled de by language ID: not in the English pool
    ("wildchat-4.8m", "en"): (1, 1, {}),  # WildChat's English row goes to the pool
    ("gsm8k", "en"): (3, 3, {}),
    ("magpie-pro", "en"): (3, 2, {"quota": 1}),
}


def _check_report(report: pd.DataFrame) -> None:
    got = {(r.source, r.language): r for r in report.itertuples(index=False)}
    assert set(got) == set(EXPECTED)
    for key, (loaded, kept, drops) in EXPECTED.items():
        r = got[key]
        assert (r.loaded, r.kept) == (loaded, kept), key
        assert {d: getattr(r, d) for d in DROP_REASONS if getattr(r, d)} == drops, key
        assert r.loaded == r.kept + sum(getattr(r, d) for d in DROP_REASONS), key  # every row accounted for


def test_cli_seed_with_the_paper_recipe_on_fixtures_of_every_source(tmp_path):
    from pgscore.cli import main

    args = ["seed", "-l", "ar,de,id,fil,ja", "--out", str(tmp_path), "--recipe", "paper", "--recipe-dir", str(FIX)]
    for name, n in QUOTAS.items():
        args += ["--recipe-quota", f"{name}={n}"]
    main(args)
    report = pd.read_csv(tmp_path / "seed_report.csv")
    _check_report(report)
    seed = pd.read_parquet(tmp_path / "seed.parquet")
    pool = pd.read_parquet(tmp_path / "english_pool.parquet")
    # the quotas asked are kept (or everything the filters leave, below a quota)
    assert seed.groupby("language").size().to_dict() == {"ar": 6, "de": 9, "id": 11, "ja": 1, "tl": 2}
    assert not seed["prompt"].str.contains("EnglishTitle").any()
    assert pool.groupby("source").size().to_dict() == {"gsm8k": 3, "magpie-pro": 2, "tulu3": 3, "wildchat-4.8m": 1}
    assert not pool["prompt"].str.contains("Bienen").any()
    # what each source contributes, read back from the fixture files
    rows = {p.stem: [json.loads(x) for x in p.read_text("utf-8").splitlines()] for p in FIX.glob("*.jsonl")}
    magpie_prompts = {r["conversations"][0]["value"] for r in rows["euroblocks"] if "Magpie" in r["dataset"]}
    eb = seed[seed["source"] == "euroblocks"]
    assert len(eb) == 2 and not set(eb["prompt"]) & magpie_prompts
    tl = seed[seed["language"] == "tl"]
    assert set(tl["prompt"]) == {r["inputs"] for r in rows["aya"] if r["language_code"] == "fil"}
    hs = seed[seed["source"] == "helpsteer3"].set_index("prompt")["response"]
    for r in rows["helpsteer3"]:
        prompt = r["context"][0]["content"]
        if r["domain"] != "multilingual":
            assert prompt not in hs.index
        elif r["overall_preference"] < 0:
            assert hs[prompt] == r["response1"]
        elif r["overall_preference"] > 0:
            assert hs[prompt] == r["response2"]
        else:  # a tie: one of the two, the same on every run
            assert hs[prompt] in (r["response1"], r["response2"])
    oa = seed[seed["source"] == "oasst2"]
    assert oa["response"].isna().all()  # prompts only (Respond)
    assert set(oa["prompt"]) <= {r["text"] for r in rows["oasst2"] if r["role"] == "prompter"}
    assert set(seed[seed["source"] == "cidar"]["language"]) == {"ar"}
    cendol = seed[seed["source"] == "cendol-v2"]
    assert set(cendol["language"]) == {"id"} and set(cendol["prompt"]) == {
        r["input"] for r in rows["cendol_v2"] if r["output"]}
    # a second run gives the same table (seeded quota sampling)
    again = tmp_path / "again"
    main([*args[:3], "--out", str(again), *args[5:]])
    pd.testing.assert_frame_equal(seed, pd.read_parquet(again / "seed.parquet"))


def test_recipe_in_the_experiment_section_and_its_sources():
    res = build_seed(["de"], SeedConfig(recipe="paper", recipe_dir=str(FIX), recipe_quotas=QUOTAS))
    assert set(res.seed["source"]) == {"aya", "wildchat-4.8m", "helpsteer3", "euroblocks", "oasst2"}
    # without a local folder the recipe reads the hub datasets the paper used, in their current names
    sources, english, notes = paper_recipe()
    hub = {s.name: (resolve(s).hf_dataset, resolve(s).hf_config) for s in sources + english}
    assert hub == {"aya": ("CohereLabs/aya_dataset", None), "wildchat-4.8m": ("allenai/WildChat-4.8M", None),
                   "helpsteer3": ("nvidia/HelpSteer3", "preference"),
                   "euroblocks": ("utter-project/EuroBlocks-SFT-Synthetic-1124", None),
                   "cidar": ("arbml/CIDAR", None), "cendol-v2": ("indonlp/cendol_collection_v2", None),
                   "oasst2": ("OpenAssistant/oasst2", None), "tulu3": ("allenai/tulu-3-sft-mixture", None),
                   "gsm8k": ("openai/gsm8k", "main"), "magpie-pro": ("Magpie-Align/Magpie-Pro-300K-Filtered", None)}
    assert [s.name for s in english] == ["tulu3", "wildchat-4.8m", "gsm8k", "magpie-pro"] and not notes
    assert all(s.optional for s in sources + english)
    assert {resolve(s).kind for s in english} == {"english_prompts"}
    # every source's per-language quotas are Table 6's cells ("-" = 0 rows)
    for s in sources + english:
        want = {lang: n or 0 for lang, n in zip(TABLE6_COLUMNS, TABLE6[s.name])}
        assert {lang: s.quota_for(lang) for lang in TABLE6_COLUMNS} == want, s.name
    assert sources[0].quota_for("tl") == OTHER_LANGUAGE_QUOTAS["aya"]  # outside Table 6: pgscore's number


def test_paper_quotas_are_table_6():
    assert set(PAPER_LANGUAGES) == set(TABLE6_COLUMNS) and set(PAPER_QUOTAS) == set(TABLE6)
    for name, cells in TABLE6.items():
        assert PAPER_QUOTAS[name] == {lang: n for lang, n in zip(TABLE6_COLUMNS, cells) if n is not None}, name
    # the transcription against the table's own totals: every target-language column adds up ...
    sums = [sum(cells[i] or 0 for cells in TABLE6.values()) for i in range(len(TABLE6_COLUMNS))]
    assert sums[1:] == list(TABLE6_TOTALS[1:])
    # ... the English one does not in the paper itself (cells 10,000 + 10,000 + 7,473 + 10,000; printed 30,743)
    assert sums[0] == 37473 != TABLE6_TOTALS[0]


def test_table_6_quotas_on_the_fixtures_and_overrides(tmp_path, capsys):
    # no overrides: Table 6's numbers; Aya has no Arabic cell in Table 6, so its Arabic rows are left out
    res = build_seed(["ar", "id", "tl"], SeedConfig(recipe="paper", recipe_dir=str(FIX)))
    got = {(r.source, r.language): (r.loaded, r.kept, r.quota) for r in res.report.itertuples(index=False)}
    assert got[("aya", "ar")] == (2, 0, 2)
    assert got[("aya", "id")] == (6, 6, 0)  # Table 6: 2786, more than the fixture has
    assert got[("aya", "tl")] == (2, 2, 0)  # outside Table 6: pgscore's 2000
    assert got[("cidar", "ar")] == (4, 4, 0) and got[("oasst2", "id")] == (1, 1, 0)  # 6000; 3
    assert got[("magpie-pro", "en")] == (3, 3, 0)
    # {source: {language: n}} overrides one cell, {source: 0} drops the source
    res = build_seed(["ar", "id"], SeedConfig(recipe="paper", recipe_dir=str(FIX),
                                              recipe_quotas={"aya": {"ar": 1, "id": 2}, "cidar": 0}))
    got = {(r.source, r.language): (r.loaded, r.kept, r.quota) for r in res.report.itertuples(index=False)}
    assert got[("aya", "ar")] == (2, 1, 1) and got[("aya", "id")] == (6, 2, 4)
    assert "cidar" not in set(res.report["source"])
    with pytest.raises(PgScoreError, match="whole numbers >= 0"):
        paper_recipe({"aya": -1})
    with pytest.raises(PgScoreError, match="whole numbers >= 0"):
        paper_recipe({"aya": {"ar": "many"}})
    # the same on the command line: SOURCE:LANG=N
    from pgscore.cli import main

    args = ["seed", "-l", "ar", "--out", str(tmp_path), "--recipe", "paper", "--recipe-dir", str(FIX)]
    main([*args, "--recipe-quota", "aya:ar=1", "--recipe-quota", "cidar=2"])
    report = pd.read_csv(tmp_path / "seed_report.csv").set_index(["source", "language"])
    assert report.loc[("aya", "ar"), "kept"] == 1 and report.loc[("cidar", "ar"), "kept"] == 2
    with pytest.raises(SystemExit) as exc:
        main([*args, "--recipe-quota", "aya:=3"])
    assert exc.value.code == 2 and "SOURCE:LANG=N" in capsys.readouterr().err


def test_recipe_errors_and_missing_local_copies(tmp_path):
    with pytest.raises(PgScoreError, match="unknown source"):
        paper_recipe({"nope": 3})
    with pytest.raises(PgScoreError, match="not a folder"):
        paper_recipe(recipe_dir=str(tmp_path / "missing"))
    (tmp_path / "cidar.jsonl").write_text((FIX / "cidar.jsonl").read_text("utf-8"), encoding="utf-8")
    res = build_seed(["ar"], SeedConfig(recipe="paper", recipe_dir=str(tmp_path)))
    assert len(res.seed) == 4 and set(res.seed["source"]) == {"cidar"}
    assert any("without a local copy" in w and "aya" in w for w in res.warnings)
    proc = subprocess.run([sys.executable, "-m", "pgscore", "seed", "-l", "de", "--out", str(tmp_path / "o"),
                           "--recipe", "paper", "--source", "builtin"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not both" in proc.stderr and "Traceback" not in proc.stderr


def test_per_language_quotas_and_streamed_filters():
    from pgscore.seed.sources import load_hub

    src = SeedSource(name="aya", preset="aya", path=str(FIX / "aya.jsonl"), quota=1, quotas={"id": 3})
    res = build_seed(["id", "tl"], SeedConfig(sources=[src], english_sources=[]))
    assert res.seed.groupby("language").size().to_dict() == {"id": 3, "tl": 1}
    # a streamed hub source: filtered rows are reported but do not fill the quota
    consumed = []

    def rows():
        for i in range(40):
            consumed.append(i)
            ds = "Magpie-Align/x" if i % 2 == 0 else "EuroBlocks-chat"
            yield {"conversations": [{"from": "human", "value": f"Frage {i}"}, {"from": "gpt", "value": "a"}],
                   "language": "German", "dataset": ds}

    df = load_hub(resolve(SeedSource(name="eb", preset="euroblocks")), ["de"], need=3, rows=rows())
    assert len(consumed) == 6 and int(df["filtered"].sum()) == 3 and int((~df["filtered"]).sum()) == 3
