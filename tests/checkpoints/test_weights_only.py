"""A checkpoint directory without tokenizer files loads as transformers loads it: weights and
config, `Model.tokenizer` None; text needs a tokenizer from elsewhere (`tokenizer=` /
`model.tokenizer`), and asking for text without one is a one-line error."""
import os

import numpy as np
import pytest

import negojax
from trainer_runs import one_line_error, run_main

TINY = dict(hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
            head_dim=8)


@pytest.fixture(scope="module")
def weights_only(tmp_path_factory):
    model = negojax.load_model("smollm2-135m", random_init=True, overrides=TINY)
    out = str(tmp_path_factory.mktemp("weights") / "model")
    negojax.export_hf(model, out)
    assert not {"tokenizer.json", "tokenizer.model"} & set(os.listdir(out))
    return model, out


def test_loads_without_tokenizer_like_transformers(weights_only):
    import torch
    import transformers
    model, path = weights_only
    loaded = negojax.load_model(path)
    assert loaded.tokenizer is None
    ids = np.arange(1, 9, dtype=np.int32)[None]
    reference = transformers.AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        expected = reference(torch.tensor(ids, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(np.asarray(loaded.logits(ids)), expected, atol=1e-4)
    with pytest.raises(ValueError, match="no tokenizer") as error:
        negojax.chat(loaded, [{"role": "user", "content": "Hi"}])
    assert "\n" not in str(error.value)


def test_tokenizer_from_elsewhere(weights_only, smollm_dir):
    _, path = weights_only
    loaded = negojax.load_model(path, tokenizer=smollm_dir)
    assert loaded.tokenizer.vocab_size == loaded.config.vocab_size
    assert isinstance(negojax.chat(loaded, [{"role": "user", "content": "Hi"}],
                                   max_new_tokens=2), str)


def test_run_on_weights_only_names_model_tokenizer(weights_only, tmp_path):
    _, path = weights_only
    line = one_line_error(run_main("tiny_test", tmp_path / "run",
                                   f"--config.model.path={path}", status=2))
    assert "config.model.path" in line and "set model.tokenizer" in line
