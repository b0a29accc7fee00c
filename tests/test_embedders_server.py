"""Server embedders: an OpenAI-compatible /v1/embeddings client against a real HTTP server on 127.0.0.1
(started here), with batching, retries on injected 429/500 answers, the run ledger's cache on re-run,
E5 prefixes and presets; and ``trust_remote_code`` for sentence-transformers models with their own code."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pgscore.errors import PgScoreError

DIM = 12
FAULT = re.compile(r"\[\[(429|500)x(\d+)\]\]|\[\[400\]\]")
SYNTHETIC = Path(__file__).parent / "fixtures" / "metrics" / "synthetic.jsonl"


def expected_vector(text: str) -> np.ndarray:
    """What the server answers for one input: a unit vector seeded by the text's sha256."""
    rng = np.random.default_rng(int(hashlib.sha256(text.encode()).hexdigest()[:12], 16))
    v = rng.normal(size=DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


class EmbeddingsServer:
    """``POST /v1/embeddings``. Inputs holding ``[[429xN]]`` / ``[[500xN]]`` make the first N attempts of
    that request fail with that status (429 with ``Retry-After: 0``); ``[[400]]`` always answers 400.
    Answers list the embeddings in reverse order (with their ``index``), as servers may."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s
        self.inflight = self.max_inflight = 0
        self.lock = threading.Lock()
        self.batches: list[list[str]] = []  # inputs of every attempt
        self.statuses: list[int] = []
        self.auth: list[str | None] = []
        self.attempts: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                if server.delay_s:
                    time.sleep(server.delay_s)
                with server.lock:
                    server.inflight -= 1
                inputs = body["input"]
                server.batches.append(list(inputs))
                server.auth.append(self.headers.get("Authorization"))
                key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
                server.attempts[key] += 1
                status = 200
                for m in FAULT.finditer(" ".join(inputs)):
                    if m.group(0) == "[[400]]":
                        status = 400
                    elif server.attempts[key] <= int(m.group(2)):
                        status = int(m.group(1))
                server.statuses.append(status)
                if self.path != "/v1/embeddings":
                    status = 404
                if status != 200:
                    payload = json.dumps({"error": {"message": f"injected {status}"}}).encode()
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "0")
                else:
                    data = [{"object": "embedding", "index": i, "embedding": expected_vector(t).tolist()}
                            for i, t in enumerate(inputs)][::-1]
                    payload = json.dumps({"object": "list", "data": data, "model": body["model"],
                                          "usage": {"prompt_tokens": sum(len(t.split()) for t in inputs)}}).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    with EmbeddingsServer() as s:
        yield s


def _embedder(server, model="fake-embed", **options):
    from pgscore.models.embedders import load_embedder

    batch = options.pop("batch_size", 4)
    opts = {"backoff_base": 0.001, "backoff_max": 0.01, "concurrency": 1, **options}
    return load_embedder({"backend": "openai", "model": model, "base_url": server.url, "batch_size": batch,
                          "options": opts})


def test_batches_keep_input_order(server):
    texts = [f"Satz Nummer {i}." for i in range(10)]
    emb = _embedder(server)
    got = emb.encode(texts)
    assert [len(b) for b in server.batches] == [4, 4, 2]  # batch_size 4
    assert [t for b in server.batches for t in b] == texts  # no prefix for a non-E5 model
    assert np.allclose(got, np.stack([expected_vector(t) for t in texts]))  # reversed answers re-ordered
    assert emb.dim == DIM and emb.usage["requests"] == 3 and emb.usage["retries"] == 0
    assert emb.usage["prompt_tokens"] == 30
    assert emb.encode([]).shape == (0, DIM)


def test_concurrent_batches_keep_order():
    with EmbeddingsServer(delay_s=0.05) as server:
        emb = _embedder(server, batch_size=2, concurrency=4)
        texts = [f"Kalimat nomor {i}." for i in range(16)]
        got = emb.encode(texts)
        assert server.max_inflight >= 2  # batches were in flight together
        assert sorted(len(b) for b in server.batches) == [2] * 8
        assert np.allclose(got, np.stack([expected_vector(t) for t in texts]))


def test_retries_429_and_500_then_gives_up_with_one_line(server):
    emb = _embedder(server)
    texts = ["a [[429x2]]", "b", "c", "d", "e [[500x1]]"]
    got = emb.encode(texts)
    assert np.allclose(got, np.stack([expected_vector(t) for t in texts]))
    assert server.statuses == [429, 429, 200, 500, 200]  # batch 1: two 429s; batch 2: one 500
    assert emb.usage["retries"] == 3
    few = _embedder(server, max_retries=1)
    with pytest.raises(PgScoreError, match=r"HTTP 500 \(gave up after 2 attempts\)"):
        few.encode(["x [[500x5]]"])
    n = len(server.statuses)
    with pytest.raises(PgScoreError, match="HTTP 400"):
        few.encode(["never [[400]]"])
    assert len(server.statuses) == n + 1  # a permanent error is not retried


def test_api_key_from_env_is_sent_and_never_shown(server, monkeypatch):
    monkeypatch.setenv("MY_EMBED_KEY", "sk-test-123")
    from pgscore.models.embedders import load_embedder

    emb = load_embedder({"backend": "openai", "model": "m", "base_url": server.url, "api_key_env": "MY_EMBED_KEY"})
    emb.encode(["hallo"])
    assert server.auth[-1] == "Bearer sk-test-123"
    assert "sk-test" not in repr(emb) and "sk-test" not in emb.name


def test_e5_prefixes_and_presets(server, monkeypatch):
    from pgscore.models.embedders import EMBEDDER_PRESETS, E5_INSTRUCT_PREFIX, default_prefix, load_embedder

    _embedder(server, model="intfloat/multilingual-e5-large").encode(["Wie geht's?"])
    assert server.batches[-1] == ["query: Wie geht's?"]
    _embedder(server, model="intfloat/multilingual-e5-large-instruct").encode(["Wie geht's?"])
    assert server.batches[-1] == [E5_INSTRUCT_PREFIX + "Wie geht's?"]
    _embedder(server, model="intfloat/multilingual-e5-large", prefix="").encode(["Wie geht's?"])
    assert server.batches[-1] == ["Wie geht's?"]  # an explicit prefix wins
    assert default_prefix("nvidia/llama-embed-nemotron-8b") == "" and default_prefix("me5-base") == ""
    # the paper's embedder behind a server: base_url from PGSCORE_EMBED_URL, texts as the authors encode them
    monkeypatch.setenv("PGSCORE_EMBED_URL", server.url)
    emb = load_embedder("nemotron-server")
    assert emb.model == "nvidia/llama-embed-nemotron-8b" and emb.base_url == server.url and emb.batch_size == 32
    emb.encode(["Apa kabar?"])
    assert server.batches[-1] == ["Apa kabar?"]
    st = EMBEDDER_PRESETS["nemotron"]
    assert st["trust_remote_code"] is True and st["model"] == "nvidia/llama-embed-nemotron-8b"
    with pytest.raises(PgScoreError, match="unknown embedder preset"):
        load_embedder({"preset": "nope", "model": "x"})
    with pytest.raises(PgScoreError, match="unknown field"):
        load_embedder({"backend": "st", "model": "x", "bogus": 1})


def test_run_measure_caches_server_vectors_in_the_ledger(server, tmp_path):
    from pgscore.io import read_table
    from pgscore.ledger import Ledger
    from pgscore.metrics.config import MetricsConfig
    from pgscore.metrics.diversity import pairwise_cosine
    from pgscore.metrics.measure import run_measure

    cfg = MetricsConfig(embedder={"backend": "openai", "model": "fake-embed", "base_url": server.url,
                                  "batch_size": 8, "options": {"backoff_base": 0.001}},
                        perplexity_model=None, chunk_size=16)
    off = dict(detector=None, counter=None, judge=None, perplexity_model=None)
    synth = read_table(SYNTHETIC)
    ok = synth[synth["status"] == "ok"].reset_index(drop=True)
    texts = ok["prompt"].tolist() + ok["response"].tolist()
    synth.loc[synth.index[synth["status"] == "ok"][0], "prompt"] += " [[429x1]]"  # one retried batch
    ok.loc[0, "prompt"] += " [[429x1]]"
    texts[0] = ok.loc[0, "prompt"]
    _, m1, _ = run_measure(synth, tmp_path, cfg, progress=False, **off)
    first = len(server.batches)
    distinct = len(set(texts))
    assert sum(len(b) for b, s in zip(server.batches, server.statuses) if s == 200) == distinct
    assert 429 in server.statuses
    # dataset diversity from the server's vectors, recomputed here from the expected vectors
    row = m1[(m1["method"] == "all")].iloc[0]
    sel = ((ok["teacher"] == row["teacher"]) & (ok["language"] == row["language"]) & (ok["trial"] == row["trial"]))
    ref = pairwise_cosine(np.stack([expected_vector(t) for t in ok.loc[sel, "prompt"]])).diversity
    assert row["prompt_diversity"] == pytest.approx(ref, abs=1e-6)
    # re-run: every vector comes from the run ledger, the server sees nothing
    _, m2, _ = run_measure(synth, tmp_path, cfg, progress=False, **off)
    assert len(server.batches) == first
    pd.testing.assert_frame_equal(m1, m2)
    stats = Ledger(tmp_path).stats().set_index("stage").loc["measure.embed"]
    assert stats["stored"] == distinct and stats["hits"] >= distinct  # (the bootstrap hook reads them too)
    assert not (tmp_path / "cache" / "embeddings").exists()  # the ledger holds them, no second copy


# ------------------------------------------------------------------ trust_remote_code (sentence-transformers)

CUSTOM_CONFIG = '''
from transformers import BertConfig


class ShiftedBertConfig(BertConfig):
    model_type = "shifted-bert"
'''

CUSTOM_MODEL = '''
from transformers import BertModel

from .configuration_shifted import ShiftedBertConfig


class ShiftedBertModel(BertModel):
    """A BERT whose outputs are shifted by +1: custom code that only loads with trust_remote_code."""

    config_class = ShiftedBertConfig

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.last_hidden_state = out.last_hidden_state + 1.0
        return out
'''


def test_trust_remote_code_loads_a_model_with_its_own_code(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("sentence_transformers")
    from pgscore.models.embedders import load_embedder

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hund", "park", "anjing", "taman"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32)
    bert = transformers.BertModel(cfg).eval()
    bert.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    (tmp_path / "configuration_shifted.py").write_text(CUSTOM_CONFIG)
    (tmp_path / "modeling_shifted.py").write_text(CUSTOM_MODEL)
    conf = json.loads((tmp_path / "config.json").read_text())
    conf.update(model_type="shifted-bert", architectures=["ShiftedBertModel"],
                auto_map={"AutoConfig": "configuration_shifted.ShiftedBertConfig",
                          "AutoModel": "modeling_shifted.ShiftedBertModel"})
    (tmp_path / "config.json").write_text(json.dumps(conf))

    with pytest.raises(PgScoreError, match="cannot load embedder"):
        load_embedder({"backend": "st", "model": str(tmp_path)})  # custom code refused by default
    emb = load_embedder({"backend": "st", "model": str(tmp_path), "trust_remote_code": True})
    texts = ["hund park", "anjing taman"]
    got = emb.encode(texts)
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = bert(**enc).last_hidden_state + 1.0  # the custom code ran
    mask = enc["attention_mask"][..., None].float()
    ref = ((h * mask).sum(1) / mask.sum(1)).numpy()
    assert np.allclose(got, ref, atol=1e-5)


def test_a_failed_batch_is_counted_in_the_ledger_and_the_stored_ones_survive(server, tmp_path):
    from pgscore.ledger import Ledger
    from pgscore.models.embedders import CachedEmbedder

    ledger = Ledger(tmp_path)
    emb = CachedEmbedder(_embedder(server, batch_size=2, max_retries=0), ledger)
    texts = ["eins zwei", "drei vier", "fünf [[500x9]]", "sechs"]
    with pytest.raises(PgScoreError, match="gave up after 1 attempts"):
        emb.encode(texts)
    assert len(ledger) == 2 and len(ledger.failures()) == 2  # batch 1 stored, batch 2 failed
    n = len(server.batches)
    ok = CachedEmbedder(_embedder(server, batch_size=2), ledger).encode(texts[:2])
    assert len(server.batches) == n and np.allclose(ok, np.stack([expected_vector(t) for t in texts[:2]]))
    ledger.close()
