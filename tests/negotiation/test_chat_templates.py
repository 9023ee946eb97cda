"""The dialogue loop under the published chat templates of every family negojax serves, against
transformers' own rendering: windowed and full-history self-play, including Qwen3's template,
which re-renders earlier assistant messages once a later message follows."""
import numpy as np
import pytest

from chat_families import TEMPLATE_FAMILIES, VOCAB, hf_encoder, tiny_config, vocab_gguf
from rollout_checks import check_full_history_records, check_windowed_record
from negojax.data import load_tasks
from negojax.models import transformer as tf
from negojax.negotiation import NegotiationConfig, NegotiationEngine
from negojax.sampling import Generation, Session
from negojax.tokenization import Tokenizer

G = 2


@pytest.fixture(scope="module")
def task():
    return [t for t in load_tasks("train") if len(t.personas) == 2][:1]


def tiny_model(family, tokenizer):
    config = tiny_config(family, tokenizer.vocab_size)
    return config, tf.init_params(config, seed=0)


def never_agree(states):
    return np.zeros(len(states), bool)


def self_play(tokenizer, config, params, tasks, context_turns, **kw):
    cfg = NegotiationConfig(max_turns=4, context_turns=context_turns, max_new_tokens=8,
                            top_p=1.0, agreement="marker")
    engine = NegotiationEngine(cfg, config, tokenizer, agreement_fn=never_agree, **kw)
    return engine.rollout(tasks, group_size=G, seat_params=[params, params],
                          trainable_seats=(0, 1), seed=3)


@pytest.mark.parametrize("vocab", ["qwen2", "llama-bpe"])
def test_vocabularies_tokenise_as_the_published_tokenizers(vocab, tmp_path):
    """llama.cpp's reference tokenisations, made with each family's own HF tokenizer."""
    from gguf import GGUFReader

    from negojax.checkpoints.gguf import build_tokenizer
    path = vocab_gguf(vocab, str(tmp_path))
    tokenizer = build_tokenizer(GGUFReader(path), path)
    with open(f"{VOCAB}/{vocab}.inp", encoding="utf-8") as f:
        texts = f.read().split("\n__ggml_vocab_test__\n")
    with open(f"{VOCAB}/{vocab}.out", encoding="utf-8") as f:
        expected = [[int(i) for i in line.split()] for line in f.read().split("\n")]
    assert len(texts) == 47
    for text, ids in zip(texts, expected):
        assert tokenizer.encode(text, add_special_tokens=False).ids == ids, text


@pytest.mark.parametrize("family", TEMPLATE_FAMILIES)
@pytest.mark.parametrize("context_turns", [2, None], ids=["windowed", "full-history"])
def test_self_play_prompts_equal_transformers_rendering(family, context_turns, family_dirs,
                                                        family_references, task):
    """4 turns of two-seat self-play: every prompt a seat read is transformers' rendering of its
    chat, and the loss covers exactly the tokens it sampled, under their sampling log-probs."""
    tokenizer = Tokenizer(family_dirs[family])
    config, params = tiny_model(family, tokenizer)
    out = self_play(tokenizer, config, params, task, context_turns)
    encode = hf_encoder(family_references[family])
    assert all(len(d["turns"]) == 4 for d in out.dialogues)
    if context_turns is None:
        check_full_history_records(encode, out, task, {0: params, 1: params}, config, (0, 1), G)
    else:
        assert len(out.sequences) == 4 * G
        for seq in out.sequences:
            check_windowed_record(encode, lambda ids: tokenizer.decode(ids).strip(), seq,
                                  out.dialogues[seq.group_index], task[0], context_turns)


def end_of_turn(tokenizer):
    """The stop token the template closes an assistant message with."""
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "a"},
                                         {"role": "assistant", "content": "b"}], False)
    return next(i for i in reversed(ids) if i in tokenizer.stop_ids)


def scripted_session(tokenizer):
    """A Session whose seats 'sample' fixed messages that the tokenizer splits canonically, as a
    trained model's messages nearly always are (a random model's rarely are)."""
    stop = end_of_turn(tokenizer)

    class Scripted(Session):
        turn = 0
        extended = []  # per extend call: the longest row's new tokens, and its length after

        def extend(self, token_lists):
            super().extend(token_lists)
            longest = max(range(len(token_lists)), key=lambda b: len(token_lists[b]))
            Scripted.extended.append((len(token_lists[longest]),
                                      int(np.asarray(self.lengths)[longest])))

        def generate(self, max_new_tokens, sampling=None, *, stop_ids=(), seed=0, rows=None):
            Scripted.turn += 1
            tokens = [tokenizer.encode(f"Offer {Scripted.turn}: we share the night shifts.")
                      + [stop] if on else [] for on in rows]
            self.extend(tokens)
            logp = [np.full(len(t), -1.0, np.float32) for t in tokens]
            return Generation(tokens, logp, logp, np.asarray([bool(t) for t in tokens]))
    return Scripted


@pytest.mark.parametrize("family", TEMPLATE_FAMILIES)
def test_full_history_keeps_sampled_tokens_unless_the_template_rewrites_them(family,
                                                                             family_dirs, task):
    """Templates that extend their renderings keep each seat's sampled tokens in the cache: one
    record per seat and dialogue. Qwen3's drops the empty think block from past turns, so the
    row is cut back before each earlier message and every turn is a record of its own."""
    tokenizer = Tokenizer(family_dirs[family])
    config, params = tiny_model(family, tokenizer)
    session_cls = scripted_session(tokenizer)
    out = self_play(tokenizer, config, params, task, None, session_cls=session_cls)
    # After a seat's first turn its row is continued, never prefilled again: each later prompt
    # extension (every other extend call is a scripted message) adds fewer tokens than the row
    # then holds, for Qwen3 too (cut back to the common prefix, not to nothing).
    prompts = session_cls.extended[0::2]
    assert all(added < held for added, held in prompts[2:])
    counts = {}
    for seq in out.sequences:
        counts[seq.seat] = counts.get(seq.seat, 0) + 1
        assert seq.loss_mask.sum() == sum(
            t["num_tokens"] for t in out.dialogues[seq.group_index]["turns"]
            if t["speaker"] == seq.seat) / (2 if family == "qwen3" else 1)
    assert counts == ({0: 2 * G, 1: 2 * G} if family == "qwen3" else {0: G, 1: G})


def test_qwen3_generation_prompt_closes_an_empty_think_block_unless_thinking(family_dirs):
    chat = [{"role": "user", "content": "Who gets the new hire?"}]
    off = Tokenizer(family_dirs["qwen3"]).render_chat(chat)
    on = Tokenizer(family_dirs["qwen3"], thinking=True).render_chat(chat)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert on.endswith("<|im_start|>assistant\n")
