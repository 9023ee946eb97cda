"""Packed train rows: prefix trees and lone sequences, checked against the unpacked sequences."""
import types

import jax.numpy as jnp
import numpy as np
import pytest

from negojax.models import transformer as tf
from negojax.rl.packing import attention_parity_length, pack_sequences
from train_step_case import CONFIG


def sequence(tokens, generated: int, advantage_seed: int = 0):
    tokens = np.asarray(tokens, np.int32)
    mask = np.zeros(len(tokens), bool)
    mask[len(tokens) - generated:] = True
    logp = np.where(mask, -1.0 - 0.01 * np.arange(len(tokens)), 0.0).astype(np.float32)
    return types.SimpleNamespace(tokens=tokens, loss_mask=mask, old_logp=logp)


def grouped_sequences(seed=0, stem=40, groups=2, members=3, lone=2):
    """`groups` sets of `members` sequences sharing a `stem`-token prompt opening, then `lone`
    unrelated sequences; every sequence ends in 6 generated tokens."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(groups):
        opening = rng.integers(1, CONFIG.vocab_size, stem)
        for _ in range(members):
            rest = rng.integers(1, CONFIG.vocab_size, rng.integers(8, 14))
            out.append(sequence(np.concatenate([opening, rest]), 6))
    for _ in range(lone):
        out.append(sequence(rng.integers(1, CONFIG.vocab_size, rng.integers(20, 50)), 6))
    return out


def unpack(packed, r, segment, branch):
    """The token sequence of (row, segment, branch): the stem, then the branch."""
    seg = packed.segment_ids[r] == segment
    keep = seg & ((packed.branch_ids[r] == 0) | (packed.branch_ids[r] == branch))
    return packed.tokens[r][keep], packed.position_ids[r][keep]


def test_every_sequence_is_its_stem_and_branch_with_positions_from_zero():
    seqs = grouped_sequences()
    packed = pack_sequences(seqs, np.arange(len(seqs), dtype=np.float32), (128,),
                            parity_length=1000)
    found = []
    for r in range(len(packed.tokens)):
        for segment in set(packed.segment_ids[r].tolist()) - {0}:
            branches = set(packed.branch_ids[r][packed.segment_ids[r] == segment].tolist())
            for branch in (branches - {0}) or {0}:
                tokens, positions = unpack(packed, r, segment, branch)
                np.testing.assert_array_equal(positions, np.arange(len(tokens)))
                found.append(tokens.tolist())
                where = (packed.segment_ids[r] == segment) & (packed.branch_ids[r] == branch)
                adv = set(packed.advantages[r][where & (packed.loss_mask[r] > 0)].tolist())
                match = [i for i, s in enumerate(seqs) if s.tokens.tolist() == tokens.tolist()]
                assert adv == {float(match[0])}
                if branch:  # a branch opens with a context token, never a loss token
                    assert packed.loss_mask[r][np.flatnonzero(where)[0]] == 0
    assert sorted(found) == sorted(s.tokens.tolist() for s in seqs)
    # Each group's 40-token opening is stored once per tree, not once per sequence.
    assert (packed.segment_ids > 0).sum() < sum(len(s.tokens) for s in seqs) - 2 * 2 * 39
    assert packed.loss_mask.sum() == 6 * len(seqs)


def test_the_cheaper_row_length_wins_and_short_rows_are_refused():
    seqs = grouped_sequences(members=4, lone=0)
    longest = max(len(s.tokens) for s in seqs)
    one_per_row = pack_sequences(seqs, np.zeros(len(seqs)), (longest,), parity_length=10**6)
    chosen = pack_sequences(seqs, np.zeros(len(seqs)), (longest, 4 * longest),
                            parity_length=10**6)
    assert chosen.tokens.size < one_per_row.tokens.size
    # Attention that costs more than the matmuls at short lengths makes long rows lose.
    assert pack_sequences(seqs, np.zeros(len(seqs)), (longest, 4 * longest),
                          parity_length=1).tokens.shape[1] == longest
    with pytest.raises(ValueError, match="row length 10 < the longest sequence") as err:
        pack_sequences(seqs, np.zeros(len(seqs)), (10,), parity_length=100)
    assert "\n" not in str(err.value)
    assert pack_sequences([], [], (64,), parity_length=100).tokens.shape == (0, 64)


def test_parity_length_of_smollm2():
    from negojax.models.config import preset
    # 30 layers of 3.5M params against 4 * 576 FLOPs per key and layer: a row of ~3k tokens
    # spends as much on attention as on its matmuls.
    assert attention_parity_length(preset("smollm2-135m")) == 3072


def test_packed_rows_give_the_hidden_states_of_separate_rows():
    params = tf.init_params(CONFIG, seed=0)
    seqs = grouped_sequences(seed=1)
    packed = pack_sequences(seqs, np.zeros(len(seqs)), (128,), parity_length=1000)
    mask = tf.prefix_tree_mask(jnp.asarray(packed.segment_ids),
                               jnp.asarray(packed.branch_ids))
    h = np.asarray(tf.hidden_states(params, CONFIG, jnp.asarray(packed.tokens),
                                    jnp.asarray(packed.position_ids), mask=mask))
    for s in seqs:
        alone = np.asarray(tf.hidden_states(params, CONFIG, jnp.asarray(s.tokens)[None]))[0]
        hits = 0
        for r in range(len(packed.tokens)):
            for segment in set(packed.segment_ids[r].tolist()) - {0}:
                seg = packed.segment_ids[r] == segment
                for branch in set(packed.branch_ids[r][seg].tolist()):
                    keep = seg & ((packed.branch_ids[r] == 0)
                                  | (packed.branch_ids[r] == branch))
                    if packed.tokens[r][keep].tolist() == s.tokens.tolist():
                        np.testing.assert_allclose(h[r][keep], alone, atol=2e-5, rtol=1e-4)
                        hits += 1
        assert hits >= 1
