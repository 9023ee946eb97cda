"""HF safetensors directories: load, export, round trip through transformers, bad input."""
import json
import os
import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from hf_reference import FAMILIES, hf_logits, make_hf_model
from negojax.checkpoints.hf import (INDEX_FILE, SINGLE_FILE, export_hf, load_hf_config,
                                    load_hf_params)
from negojax.models import transformer as tf

IDS = np.random.default_rng(0).integers(0, 97, (2, 11))


def _saved(family, tmp_path):
    model = make_hf_model(family)
    model.save_pretrained(tmp_path / "src")
    return model, str(tmp_path / "src")


def _forward(params, config):
    return np.asarray(jax.jit(tf.forward, static_argnums=1)(params, config, jnp.asarray(IDS)))


def _tiny_tokenizer_dir(path):
    """A real (tiny) byte-level BPE tokenizer saved as HF files, to check they travel."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["the cat sat on the mat", "negotiate a third path"],
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<|im_end|>"]))
    os.makedirs(path)
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>",
                   "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"}, f)
    return path


def _assert_one_line(excinfo):
    assert "\n" not in str(excinfo.value), str(excinfo.value)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_load_export_round_trip_through_transformers(family, tmp_path):
    model, src = _saved(family, tmp_path)
    config = load_hf_config(src)
    params = load_hf_params(src, config)
    np.testing.assert_allclose(_forward(params, config), hf_logits(model, IDS), atol=1e-4, rtol=0)

    out = export_hf(params, config, None, str(tmp_path / "out"))
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    np.testing.assert_allclose(hf_logits(reloaded.eval(), IDS), hf_logits(model, IDS),
                               atol=1e-6, rtol=0)
    assert os.path.isfile(os.path.join(out, "generation_config.json"))


def test_export_copies_tokenizer_files_that_transformers_loads(tmp_path):
    model, src = _saved("llama_tied", tmp_path)
    tok_dir = _tiny_tokenizer_dir(str(tmp_path / "tok"))
    config = load_hf_config(src)
    out = export_hf(load_hf_params(src, config), config, tok_dir, str(tmp_path / "out"))
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok.eos_token == "<|im_end|>"
    assert hf_tok("the cat<|im_end|>").input_ids[-1] == hf_tok.convert_tokens_to_ids("<|im_end|>")


def test_sharded_export_and_load(tmp_path):
    model, src = _saved("qwen2", tmp_path)
    config = load_hf_config(src)
    params = load_hf_params(src, config)
    out = export_hf(params, config, None, str(tmp_path / "out"), max_shard_bytes=16_000)
    with open(os.path.join(out, INDEX_FILE)) as f:
        shards = set(json.load(f)["weight_map"].values())
    assert len(shards) > 2 and not os.path.exists(os.path.join(out, SINGLE_FILE))
    reloaded = load_hf_params(out, config)
    jax.tree.map(np.testing.assert_array_equal, reloaded, params)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    np.testing.assert_allclose(hf_logits(hf_model.eval(), IDS), hf_logits(model, IDS), atol=1e-6)


def test_bfloat16_export(tmp_path):
    _, src = _saved("qwen3", tmp_path)
    config = load_hf_config(src)
    params = load_hf_params(src, config)
    out = export_hf(params, config, None, str(tmp_path / "out"), dtype="bfloat16")
    with safe_open(os.path.join(out, SINGLE_FILE), "numpy") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    rounded = jax.tree.map(lambda x: x.astype(jnp.bfloat16).astype(jnp.float32), params)
    jax.tree.map(np.testing.assert_array_equal, load_hf_params(out, config), rounded)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    np.testing.assert_allclose(hf_logits(hf_model.eval(), IDS), _forward(rounded, config),
                               atol=1e-4, rtol=0)


def test_load_onto_shardings_and_in_bfloat16(tmp_path):
    _, src = _saved("llama_untied_mha", tmp_path)
    config = load_hf_config(src)
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("fsdp",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    shapes = tf.param_shapes(config)
    shardings = jax.tree.map(lambda _: sharding, shapes, is_leaf=lambda x: isinstance(x, tuple))
    params = load_hf_params(src, config, dtype=jnp.bfloat16, shardings=shardings)
    for leaf in jax.tree.leaves(params):
        assert leaf.sharding == sharding and leaf.dtype == jnp.bfloat16


def test_load_never_holds_two_host_copies(tmp_path):
    """Transient host memory while loading stays near the largest leaf, far below the model.

    On CPU, jax may adopt a finished numpy leaf as its device buffer; what stays allocated after
    the load is that, so only the excess of the peak over it counts as a second copy."""
    cfg = transformers.LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=512,
                                   num_hidden_layers=8, num_attention_heads=4,
                                   num_key_value_heads=2, tie_word_embeddings=True)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "big")
    src = str(tmp_path / "big")
    config = load_hf_config(src)
    total = sum(np.prod(s) * 4 for s in jax.tree.leaves(
        tf.param_shapes(config), is_leaf=lambda x: isinstance(x, tuple)))
    tracemalloc.start()
    params = load_hf_params(src, config)
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    largest = max(leaf.nbytes for leaf in jax.tree.leaves(params))
    assert peak - retained < largest * 2 + 2**20 < total, (peak, retained, largest, total)


# --------------------------------------------------------------------------- bad input


def test_missing_safetensors_file(tmp_path):
    _, src = _saved("llama_tied", tmp_path)
    os.remove(os.path.join(src, SINGLE_FILE))
    with pytest.raises(FileNotFoundError, match=r"no model\.safetensors") as e:
        load_hf_params(src, load_hf_config(src))
    _assert_one_line(e)


def test_index_pointing_at_missing_shard(tmp_path):
    _, src = _saved("llama_tied", tmp_path)
    config = load_hf_config(src)
    out = export_hf(load_hf_params(src, config), config, None, str(tmp_path / "out"),
                    max_shard_bytes=16_000)
    with open(os.path.join(out, INDEX_FILE)) as f:
        shard = sorted(set(json.load(f)["weight_map"].values()))[1]
    os.remove(os.path.join(out, shard))
    with pytest.raises(FileNotFoundError, match=rf"index\.json: tensor '.+' points at missing "
                                                rf"shard '{shard}'") as e:
        load_hf_params(out, config)
    _assert_one_line(e)


@pytest.mark.parametrize("keep_bytes", [20, 3000])  # inside the header; inside the data
def test_truncated_safetensors(tmp_path, keep_bytes):
    _, src = _saved("llama_tied", tmp_path)
    path = os.path.join(src, SINGLE_FILE)
    with open(path, "rb") as f:
        head = f.read(keep_bytes)
    with open(path, "wb") as f:
        f.write(head)
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file"
                                         r".*truncated") as e:
        load_hf_params(src, load_hf_config(src))
    _assert_one_line(e)


def test_unsupported_architecture(tmp_path):
    _, src = _saved("llama_tied", tmp_path)
    cfg_path = os.path.join(src, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["architectures"] = ["GPT2LMHeadModel"]
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    with pytest.raises(ValueError, match=r"config\.json: unsupported architecture "
                                         r"'GPT2LMHeadModel'") as e:
        load_hf_config(src)
    _assert_one_line(e)


def _rewrite_tensors(src, edit):
    path = os.path.join(src, SINGLE_FILE)
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def test_tensor_of_wrong_shape(tmp_path):
    _, src = _saved("llama_tied", tmp_path)
    name = "model.layers.0.self_attn.q_proj.weight"
    _rewrite_tensors(src, lambda t: t.__setitem__(name, t[name][:16]))
    with pytest.raises(ValueError, match=r"^model\.safetensors: tensor 'model\.layers\.0\.self_attn"
                                         r"\.q_proj\.weight' has shape \(16, 32\) but config\.json "
                                         r"implies \(32, 32\)$") as e:
        load_hf_params(src, load_hf_config(src))
    _assert_one_line(e)


def test_missing_tensor(tmp_path):
    _, src = _saved("qwen2", tmp_path)
    _rewrite_tensors(src, lambda t: t.pop("model.layers.1.self_attn.k_proj.bias"))
    with pytest.raises(ValueError, match=r"model\.safetensors: missing tensor "
                                         r"'model\.layers\.1\.self_attn\.k_proj\.bias'") as e:
        load_hf_params(src, load_hf_config(src))
    _assert_one_line(e)


def test_tied_checkpoint_with_lm_head_loads(tmp_path):
    """Some tied checkpoints still store lm_head.weight; it is ignored, not an error."""
    model, src = _saved("llama_tied", tmp_path)
    _rewrite_tensors(src, lambda t: t.__setitem__("lm_head.weight",
                                                  t["model.embed_tokens.weight"].copy()))
    config = load_hf_config(src)
    params = load_hf_params(src, config)
    assert "lm_head" not in params
    np.testing.assert_allclose(_forward(params, config), hf_logits(model, IDS), atol=1e-4)
