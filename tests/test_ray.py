"""RayModel: the same calls as map_batches over Ray actors (local mode, CPU) against the fake server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray Data not installed (pip install 'pgscore[dist]')")

sys.path.insert(0, str(Path(__file__).parent))
from fake_openai_server import FakeOpenAIServer, reply_text, word_logprob  # noqa: E402

from pgscore.dist import RayModel, connect  # noqa: E402
from pgscore.ledger import CachedModel, Ledger  # noqa: E402
from pgscore.models import ModelSpec, SamplingParams  # noqa: E402


@pytest.fixture(scope="module")
def ray_local():
    connect(None, num_cpus=2)
    yield
    ray.shutdown()


def test_ray_replicas_behind_the_ledger(ray_local, tmp_path):
    with FakeOpenAIServer(max_seconds=300) as srv:
        spec = ModelSpec(backend="openai", model="fake", base_url=srv.url, concurrency=4,
                         options={"backoff_base": 0.01})
        ledger = Ledger(tmp_path)
        model = CachedModel(RayModel(spec, replicas=2, batch_size=10, num_cpus=0.5), ledger, stage="synthesis")
        prompts = [f"question {i}" + (" [[500x1]]" if i == 3 else "") for i in range(45)]
        convs = [[{"role": "user", "content": p}] for p in prompts]
        params = SamplingParams(temperature=0.0, max_tokens=64)
        out = model.chat(convs, params)
        assert [g.text for g in out] == [reply_text(p) for p in prompts]
        assert [g.error for g in out] == [None] * 45
        assert len(ledger) == 45 and sum(srv.answered.values()) == 45
        # a re-run is served by the driver's ledger: no Ray job, no request
        again = model.chat(convs, params)
        assert again == out and sum(srv.answered.values()) == 45
        [s] = model.loglikelihood([("Hello there", " general kenobi")])
        assert s.logprob == pytest.approx(word_logprob("general") + word_logprob("kenobi"))
        st = ledger.stats().set_index("stage").loc["synthesis"]
        assert st["stored"] == 46 and st["hits"] == 45


def test_rerun_batch_skips_results_the_driver_already_has(ray_local):
    """What a batch that Ray runs again (node lost, block rebuilt) does: ask the driver-side progress
    actor, send only the requests whose results never reached the driver, "null" for the others."""
    import json

    import numpy as np

    from pgscore.dist import _Progress, _Replica

    with FakeOpenAIServer(max_seconds=120) as srv:
        spec = ModelSpec(backend="openai", model="fake", base_url=srv.url, options={"backoff_base": 0.01})
        progress = ray.remote(_Progress).options(num_cpus=0).remote()
        ray.get(progress.mark.remote("call-1", [0, 2]))  # these two reached the driver (and were stored)
        replica = _Replica(spec.model_dump(mode="json"), "chat",
                           SamplingParams(temperature=0.0, max_tokens=16).model_dump(mode="json"),
                           progress=progress, call="call-1")
        prompts = [f"again {i}" for i in range(4)]
        batch = {"i": np.arange(4), "request": np.array([json.dumps([{"role": "user", "content": p}])
                                                         for p in prompts])}
        out = replica(batch)
        assert out["result"][0] == "null" and out["result"][2] == "null"
        assert [json.loads(out["result"][j])["text"] for j in (1, 3)] == [reply_text(prompts[1]), reply_text(prompts[3])]
        assert sorted(srv.texts[k] for k in srv.attempts) == [prompts[1], prompts[3]]  # 2 sent, not 4
        # another call id knows nothing: everything is sent
        assert ray.get(progress.todo.remote("call-2", [0, 1])) == [0, 1]
