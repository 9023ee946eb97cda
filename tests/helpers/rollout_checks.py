"""What every rollout record must satisfy: the loss covers exactly the tokens a seat sampled,
once each, with the log-probs it sampled them under, and every prompt is the chat template's
rendering of the seat's chat. `encode_chat(messages) -> ids` renders with the generation prompt
(negojax's tokenizer, or transformers' own apply_chat_template)."""
import jax
import numpy as np

from negojax.models import transformer as tf
from negojax.models.config import ModelConfig
from negojax.negotiation import prompts

_token_logprobs = jax.jit(tf.token_logprobs, static_argnums=1)


def tiny_llama(vocab_size: int, *seeds: int):
    """The rollout tests' one-layer Llama over a real tokenizer's vocabulary: its config and
    one random params pytree per seed."""
    config = ModelConfig("llama", vocab_size=vocab_size, hidden_size=16, intermediate_size=32,
                         num_layers=1, num_heads=2, num_kv_heads=1, head_dim=8)
    return (config, *(tf.init_params(config, seed=s) for s in seeds))


def systems_for(task, marker="[AGREE]"):
    return [prompts.system_prompt(p, [q for q in task.personas if q is not p], marker)
            for p in task.personas]


def fresh_logprobs(params, config, tokens, width=512):
    """log p(tokens[t] | tokens[:t]) by a full causal forward, 0 at t=0 (padded to one
    compiled length)."""
    ids = np.zeros((1, max(width, len(tokens) + 1)), np.int32)
    ids[0, :len(tokens)] = tokens
    logp, _ = _token_logprobs(params, config, ids[:, :-1], ids[:, 1:])
    return np.concatenate([[0.0], np.asarray(logp[0, :len(tokens) - 1])])


def seat_chat(task, seat, turns, marker):
    return prompts.seat_messages(systems_for(task, marker)[seat], prompts.dilemma_message(task.dilemma),
                                 [(x["speaker"], x["persona"], x["text"]) for x in turns], seat)


def check_windowed_record(encode_chat, decode, seq, dialogue, task, context_turns,
                          marker="[AGREE]"):
    """One turn per record: the prompt is the seat's chat over the last context_turns messages,
    the masked tail is what it sampled."""
    mask = seq.loss_mask
    (t,) = set(seq.turn[mask].tolist())
    turn = dialogue["turns"][t]
    assert turn["speaker"] == seq.seat and (seq.agent[mask] == seq.seat).all()
    assert (seq.agent[~mask] == -1).all() and (seq.turn[~mask] == -1).all()
    n = int(mask.sum())
    assert n == turn["num_tokens"] and mask[-n:].all() and not mask[:-n].any()
    assert decode(seq.tokens[mask]) == turn["text"]
    assert (seq.old_logp[~mask] == 0).all() and (seq.old_logp[mask] < 0).all()
    window = dialogue["turns"][max(0, t - context_turns):t]
    assert seq.tokens[:-n].tolist() == encode_chat(seat_chat(task, seq.seat, window, marker))


def check_full_history_records(encode_chat, out, tasks, params, config, seats, group_size,
                               marker="[AGREE]"):
    """context_turns=None: each turn's prompt is the rendering of the seat's whole chat so far;
    every turn a trained seat spoke is trained in exactly one record; records are exactly what
    the KV cache held (recorded log-probs equal a fresh forward). Returns the record count per
    (prompt, group, seat)."""
    trained, records = {}, {}
    for seq in out.sequences:
        d = out.dialogues[seq.prompt_index * group_size + seq.group_index]
        task = tasks[seq.prompt_index]
        key = (seq.prompt_index, seq.group_index, seq.seat)
        records[key] = records.get(key, 0) + 1
        assert (seq.agent[seq.loss_mask] == seq.seat).all()
        assert (seq.agent[~seq.loss_mask] == -1).all()
        for t in sorted(set(seq.turn[seq.loss_mask].tolist())):
            turn = d["turns"][t]
            assert turn["speaker"] == seq.seat
            trained.setdefault(key, []).append(t)
            start = int(np.argmax(seq.turn == t))
            assert (seq.turn == t).sum() == turn["num_tokens"]
            assert seq.tokens[:start].tolist() == encode_chat(
                seat_chat(task, seq.seat, d["turns"][:t], marker))
        fresh = fresh_logprobs(params[seq.seat], config, seq.tokens)
        np.testing.assert_allclose(fresh[seq.loss_mask], seq.old_logp[seq.loss_mask], atol=2e-4)
    for d in out.dialogues:
        for seat in seats:
            own = [t for t, x in enumerate(d["turns"]) if x["speaker"] == seat]
            assert sorted(trained.get((d["prompt_index"], d["group_index"], seat), [])) == own
    return records
