"""The embedded SmolLM2 end to end: greedy replies and token-for-token parity with transformers."""
import torch
import transformers

import negojax
from negojax.sampling import sample

PROMPTS = [
    "What is the capital of France?",
    "Write one short sentence about the sea at night.",
    "Two neighbours argue about a tall hedge that blocks one garden's sunlight but gives the "
    "other privacy. Suggest a compromise that serves both of them.",
    "List three fruits that grow on trees in a temperate climate.",
]


def test_greedy_reply_names_paris(default_model):
    reply = negojax.chat(default_model, [{"role": "user", "content": PROMPTS[0]}],
                         max_new_tokens=24)
    assert "Paris" in reply


def test_batched_greedy_equals_transformers_generate(default_model):
    """4 prompts of different lengths in one batch, 48 new tokens, against HF per prompt."""
    tok = default_model.tokenizer
    prompts = [tok.apply_chat_template([{"role": "user", "content": p}]) for p in PROMPTS]
    assert len({len(p) for p in prompts}) == 4
    ours = sample(default_model.params, default_model.config, prompts, max_new_tokens=48)
    hf = transformers.AutoModelForCausalLM.from_pretrained(default_model.source_dir,
                                                           torch_dtype=torch.float32).eval()
    for ids, got in zip(prompts, ours.tokens):
        with torch.no_grad():
            ref = hf.generate(torch.tensor([ids]), max_new_tokens=48, min_new_tokens=48,
                              do_sample=False, eos_token_id=None, pad_token_id=0)
        assert got == ref[0, len(ids):].tolist()
        assert len(got) == 48
