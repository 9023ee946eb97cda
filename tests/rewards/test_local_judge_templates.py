"""The LocalJudge reads its answer at the right position under every family's published chat
template: right after the generation prompt transformers renders (for Qwen3 with thinking off,
after the empty think block), even when the policy it judges for thinks."""
import numpy as np
import pytest

from chat_families import TEMPLATE_FAMILIES, hf_encoder, tiny_config
from negojax.api import Model
from negojax.models import transformer
from negojax.rewards import LocalJudge, rubric
from negojax.tokenization import Tokenizer
from test_local_judge import CA_PAIRS


@pytest.fixture(scope="module")
def solutions():
    return [(d, p, s) for d, p, good, bad in CA_PAIRS[:2] for s in (good, bad)]


@pytest.mark.parametrize("family", TEMPLATE_FAMILIES)
def test_ca_score_reads_after_the_templates_generation_prompt(family, family_dirs,
                                                              family_references, solutions):
    tokenizer = Tokenizer(family_dirs[family], thinking=True)
    config = tiny_config(family, tokenizer.vocab_size, hidden_size=32, num_layers=2,
                         tie_word_embeddings=False)
    model = Model(config, transformer.init_params(config, seed=4), tokenizer)
    digits = [tokenizer.encode(str(k))[0] for k in range(6)]
    encode = hf_encoder(family_references[family])
    expected = []
    for dilemma, personas, solution in solutions:
        ids = encode(rubric.ca_score_messages(dilemma, personas, solution))
        if family == "qwen3":
            assert tokenizer.decode(ids[-4:], skip_special_tokens=False) == "<think>\n\n</think>\n\n"
        logits = np.asarray(model.logits(np.asarray([ids], np.int32)))[0, -1, digits]
        probs = np.exp(logits - logits.max())
        expected.append(probs @ np.arange(6) / probs.sum())
    got = LocalJudge(model).ca_score(*map(list, zip(*solutions)))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert np.ptp(expected) > 1e-3  # rows differ, so a misread position would show
