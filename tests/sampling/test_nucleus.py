"""The bisection nucleus (negojax.sampling.rules.nucleus_threshold) keeps exactly the tokens a
sort keeps: each token whose strictly-larger logits hold less than top_p of the mass."""
import jax.numpy as jnp
import numpy as np
import pytest

from negojax.sampling import SamplingParams, filtered_logits


def sorted_nucleus(logits: np.ndarray, top_p: float) -> np.ndarray:
    """float64 reference: keep x iff mass{logits > logits[x]} < top_p."""
    p = np.exp(logits - logits.max())
    p /= p.sum()
    order = np.argsort(-logits, kind="stable")
    above = np.zeros_like(p)
    above[order] = np.cumsum(p[order]) - p[order]
    # Tied logits share the mass above the group (a sort keeps the whole tie group).
    for value in np.unique(logits):
        tie = logits == value
        above[tie] = above[tie].min()
    return above < top_p


@pytest.mark.parametrize("top_p", [0.05, 0.5, 0.9, 0.95])
def test_bisection_nucleus_equals_sorted_nucleus(top_p):
    rng = np.random.default_rng(0)
    peaked = rng.standard_normal((4, 5000)) * np.array([[1.0], [3.0], [6.0], [0.3]])
    ties = np.round(rng.standard_normal((2, 5000)), 1)  # many exactly equal logits
    logits = np.concatenate([peaked, ties]).astype(np.float32)
    mode = SamplingParams(temperature=1.0, top_p=top_p).mode
    kept = np.isfinite(np.asarray(filtered_logits(jnp.asarray(logits), 1.0, top_p, mode)))
    for row in range(len(logits)):
        expected = sorted_nucleus(logits[row].astype(np.float64), top_p)
        # float32 vs float64 mass may move a token that sits on the boundary; allow one.
        assert np.sum(kept[row] != expected) <= 1, (row, kept[row].sum(), expected.sum())
        assert kept[row][np.argmax(logits[row])]


def test_nucleus_with_masked_entries_and_a_dominant_token():
    logits = jnp.asarray([[10.0, 0.0, -jnp.inf, 1.0], [0.0, 0.0, 0.0, 0.0]])
    mode = SamplingParams(temperature=1.0, top_p=0.9).mode
    kept = np.isfinite(np.asarray(filtered_logits(logits, 1.0, 0.9, mode)))
    np.testing.assert_array_equal(kept, [[True, False, False, False], [True] * 4])
