"""Run ledger: hits/misses, per-result commits, stats, several processes, no key in artifacts."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai_server import FakeOpenAIServer, reply_text  # noqa: E402

from pgscore.cli import main  # noqa: E402
from pgscore.errors import PgScoreError  # noqa: E402
from pgscore.ledger import CachedModel, Ledger, chunk_bounds, request_keys  # noqa: E402
from pgscore.models import ModelSpec, SamplingParams, load_model  # noqa: E402
from pgscore.models.base import ContinuationScore, Generation, LanguageModel  # noqa: E402

GREEDY = SamplingParams(temperature=0.0, max_tokens=64)


class CountingModel(LanguageModel):
    """A deterministic in-process model that counts what it is asked (no on_result support)."""

    def __init__(self) -> None:
        self.spec = ModelSpec(backend="fake", model="counting")
        self.seen: list = []

    def chat(self, conversations, params):
        self.seen += [c[-1]["content"] for c in conversations]
        return [Generation(text=c[-1]["content"].upper(), prompt_tokens=1, completion_tokens=2, cost_usd=0.5)
                if "fail" not in c[-1]["content"] else Generation(text="", error="boom")
                for c in conversations]

    def complete(self, prompts, params):
        self.seen += list(prompts)
        return [Generation(text=p[::-1]) for p in prompts]

    def loglikelihood(self, requests):
        self.seen += list(requests)
        return [ContinuationScore(logprob=-float(len(c)), n_tokens=len(c)) for _, c in requests]


def user(t):
    return [{"role": "user", "content": t}]


def test_hits_misses_order_and_dedupe(tmp_path):
    led = Ledger(tmp_path)
    inner = CountingModel()
    m = CachedModel(inner, led, stage="synthesis", label="teacher-a", chunk_size=2)
    out = m.chat([user("a"), user("b"), user("a")], GREEDY)
    assert [g.text for g in out] == ["A", "B", "A"]
    assert inner.seen == ["a", "b"]  # greedy repeat sent once
    out2 = m.chat([user("c"), user("b"), user("a")], GREEDY)
    assert [g.text for g in out2] == ["C", "B", "A"] and inner.seen == ["a", "b", "c"]
    assert out2[1] == Generation(text="B", prompt_tokens=1, completion_tokens=2, cost_usd=0.5)
    assert m.complete(["xy"], GREEDY)[0].text == "yx"
    assert m.loglikelihood([("ctx", "abc"), ("ctx", "abc")])[0].logprob == -3.0
    assert m.loglikelihood([("ctx", "abc")])[0] == ContinuationScore(logprob=-3.0, n_tokens=3)
    assert inner.seen.count(("ctx", "abc")) == 1
    assert len(led) == 5
    # the wrapper offers the LanguageModel interface only (issue 13): backend attributes are reached through
    # .model, never forwarded; the wrapper itself takes no on_result
    inner.tokenizer_name = "words"
    assert not hasattr(m, "tokenizer_name") and m.model.tokenizer_name == "words"
    assert m.accepts_on_result is False and m.name == "fake:counting"
    with pytest.raises(AttributeError):
        m.no_such_thing


def test_chunk_bounds_counts_groups_and_never_splits_one():
    assert chunk_bounds(list("abcde"), 2) == [(0, 2), (2, 4), (4, 5)]
    assert chunk_bounds([], 3) == []
    reqs = [("p", "1"), ("p", "2"), ("p", "3"), ("q", "1"), ("q", "2"), ("r", "1")]
    ctx = lambda r: r[0]  # noqa: E731
    # two contexts per chunk: a group of three is kept whole even though a chunk then holds five requests
    assert chunk_bounds(reqs, 2, ctx) == [(0, 5), (5, 6)]
    assert chunk_bounds(reqs, 1, ctx) == [(0, 3), (3, 5), (5, 6)]
    assert chunk_bounds(reqs, 10, ctx) == [(0, 6)]


def test_loglikelihood_chunks_keep_a_shared_context_in_one_call(tmp_path):
    """A judge's five scores of one row share its context: with chunks counted in requests, a chunk of 16
    cut the fourth row's scores across two model calls, and each call encoded that context again."""

    class Calls(CountingModel):
        def __init__(self):
            super().__init__()
            self.calls: list[list] = []

        def loglikelihood(self, requests):
            self.calls.append(list(requests))
            return super().loglikelihood(requests)

    inner = Calls()
    m = CachedModel(inner, Ledger(tmp_path), stage="measure.judge", chunk_size=3)
    reqs = [(f"row {i}", str(s)) for i in range(7) for s in range(1, 6)]
    out = m.loglikelihood(reqs)
    assert [o.logprob for o in out] == [-1.0] * 35
    assert [len(c) for c in inner.calls] == [15, 15, 5]  # three rows (contexts) a call, each row whole
    for call in inner.calls:
        rows = {ctx for ctx, _ in call}
        assert all(sum(1 for ctx, _ in call if ctx == r) == 5 for r in rows)
    # generation requests are still counted one by one
    m.complete([f"p{i}" for i in range(7)], GREEDY)
    assert len(inner.seen) == 35 + 7


def test_unseeded_sampling_repeats_get_their_own_keys(tmp_path):
    p = SamplingParams(temperature=0.8)
    keys = request_keys("spec", "chat", p, [user("a"), user("a"), user("b")])
    assert len(set(keys)) == 3
    assert request_keys("spec", "chat", p, [user("a")])[0] == keys[0]
    seeded = SamplingParams(temperature=0.8, seed=1)
    assert len(set(request_keys("spec", "chat", seeded, [user("a"), user("a")]))) == 1
    inner = CountingModel()
    m = CachedModel(inner, Ledger(tmp_path))
    m.chat([user("a"), user("a")], p)
    m.chat([user("a"), user("a")], p)
    assert inner.seen == ["a", "a"]


class PerPromptModel(CountingModel):
    """Takes one SamplingParams per prompt, and records what each prompt got."""

    accepts_per_prompt_params = True

    def complete(self, prompts, params):
        plist = params if isinstance(params, list) else [params] * len(prompts)
        self.seen += [(p, sp.stop) for p, sp in zip(prompts, plist)]
        return [Generation(text=p[::-1] + "|".join(sp.stop)) for p, sp in zip(prompts, plist)]


def test_per_prompt_params_keep_each_request_key(tmp_path):
    """A request's key is the same whether its params came alone or in a per-prompt list; misses reach the
    backend with their own params, in order; the wrapper says what its backend accepts."""
    stop_a = SamplingParams(temperature=0.0, max_tokens=8, stop=("A",))
    stop_b = SamplingParams(temperature=0.0, max_tokens=8, stop=("B",))
    keys = request_keys("spec", "complete", [stop_a, stop_b, stop_a], ["x", "y", "z"])
    assert keys == [request_keys("spec", "complete", stop_a, ["x"])[0],
                    request_keys("spec", "complete", stop_b, ["y"])[0],
                    request_keys("spec", "complete", stop_a, ["z"])[0]]
    with pytest.raises(ValueError, match="2 sampling parameter sets for 3"):
        request_keys("spec", "complete", [stop_a, stop_b], ["x", "y", "z"])
    inner = PerPromptModel()
    m = CachedModel(inner, Ledger(tmp_path), chunk_size=2)
    assert m.accepts_per_prompt_params and not CachedModel(CountingModel(), Ledger(tmp_path)).accepts_per_prompt_params
    assert [g.text for g in m.complete(["x"], stop_a)] == ["xA"]
    out = m.complete(["x", "y", "z"], [stop_a, stop_b, stop_b])
    assert [g.text for g in out] == ["xA", "yB", "zB"]
    assert inner.seen == [("x", ("A",)), ("y", ("B",)), ("z", ("B",))]  # "x" with stop A was a hit


def test_failures_not_cached_but_counted_and_stats(tmp_path):
    led = Ledger(tmp_path)
    inner = CountingModel()
    m = CachedModel(inner, led, stage="judge", label="j")
    out = m.chat([user("ok"), user("fail me")], GREEDY)
    assert out[1].error == "boom"
    m.chat([user("ok"), user("fail me")], GREEDY)
    assert inner.seen == ["ok", "fail me", "fail me"]  # failure retried on re-run, success not
    st = led.stats()
    row = st.iloc[0].to_dict()
    assert row == {"model": "j", "stage": "judge", "calls": 3, "stored": 1, "hits": 1, "failures": 2,
                   "prompt_tokens": 1, "completion_tokens": 2, "cost_usd": 0.5}
    assert [f["error"] for f in led.failures()] == ["boom", "boom"]


def test_each_result_committed_as_it_returns(tmp_path):
    """With an on_result backend, results land in the ledger before the batch ends."""
    with FakeOpenAIServer() as srv:
        led = Ledger(tmp_path)
        model = load_model(ModelSpec(backend="openai", model="fake", base_url=srv.url, concurrency=4))
        seen_in_db = []
        other = sqlite3.connect(led.path)

        real_put = led.put

        def spy(key, **kw):
            real_put(key, **kw)
            seen_in_db.append(other.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

        led.put = spy
        prompts = [f"p{i}" + (" [[slow:300]]" if i == 0 else "") for i in range(6)]
        out = CachedModel(model, led).chat([user(p) for p in prompts], GREEDY)
        assert [g.text for g in out] == [reply_text(p) for p in prompts]
        assert seen_in_db == [1, 2, 3, 4, 5, 6]  # visible to another connection one by one
        assert srv.log[-1][2] and sum(srv.answered.values()) == 6


def _worker(path: str, start: int) -> None:
    m = CachedModel(CountingModel(), Ledger(path), stage=f"w{start}")
    for i in range(start, start + 40):
        m.chat([user(f"r{i}")], GREEDY)


def test_several_processes_append_to_one_ledger(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), s)) for s in (0, 20, 40)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    led = Ledger(tmp_path)
    assert len(led) == 80  # 0..79, the overlapping 20..59 stored once
    assert led.stats()["calls"].sum() == 80 + 0  # INSERT OR IGNORE: first writer wins
    assert sqlite3.connect(led.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_api_key_never_written_or_logged(tmp_path, caplog, capfd):
    secret = "sk-live-DONOTLEAK-42"
    caplog.set_level(logging.DEBUG)
    with FakeOpenAIServer(api_key=secret) as srv:
        import os

        os.environ["PGS_LEAK_TEST_KEY"] = secret
        try:
            spec = ModelSpec(backend="openai", model="fake", base_url=srv.url, api_key_env="PGS_LEAK_TEST_KEY",
                             options={"backoff_base": 0.01})
            led = Ledger(tmp_path / "results")
            m = CachedModel(load_model(spec), led, stage="synthesis")
            out = m.chat([user("a"), user("b [[500x9]]"), user("c [[400]]")], GREEDY)
            assert out[0].error is None and out[1].error and out[2].error
            (tmp_path / "results" / "spec.json").write_text(spec.model_dump_json())
            main(["ledger", "stats", str(tmp_path / "results"), "--failures", "5"])
            led.close()
        finally:
            del os.environ["PGS_LEAK_TEST_KEY"]
    blobs = [p.read_bytes() for p in (tmp_path / "results").rglob("*") if p.is_file()]
    assert blobs and all(secret.encode() not in b for b in blobs)
    captured = capfd.readouterr()
    assert secret not in captured.out + captured.err + caplog.text
    assert "HTTP 400" in captured.out


def test_cli_stats_json_and_missing_ledger(tmp_path, capsys):
    CachedModel(CountingModel(), Ledger(tmp_path), stage="s", label="t").chat([user("x")], GREEDY)
    main(["ledger", "stats", str(tmp_path), "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"model": "t", "stage": "s", "calls": 1, "stored": 1, "hits": 0, "failures": 0,
                     "prompt_tokens": 1, "completion_tokens": 2, "cost_usd": 0.5}]
    with pytest.raises(PgScoreError, match="no run ledger"):
        Ledger(tmp_path / "nowhere", create=False)
    with pytest.raises(SystemExit) as exc:
        main(["ledger", "stats", str(tmp_path / "nowhere")])
    assert exc.value.code == 2
