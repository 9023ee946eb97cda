"""Judge answers read straight from logits: nothing to parse, nothing can fail to parse.

Both functions are written in jax.numpy so the in-process judge can call them inside its jitted
prefill; they accept NumPy arrays as well.
"""
import jax
import jax.numpy as jnp


def expected_score(score_token_logits):
    """Expected Collective-Agency score from the logits of the tokens "0".."5".

    score_token_logits: [N, 6], column k is the logit of the token for score k.
    Returns [N] = sum_k k * softmax(logits)_k, a value in [0, 5].
    """
    logits = jnp.asarray(score_token_logits, dtype=jnp.float32)
    probs = jax.nn.softmax(logits, axis=-1)
    return probs @ jnp.arange(logits.shape[-1], dtype=jnp.float32)


def binary_probability(yes_logit, no_logit):
    """P(yes) when the answer is restricted to the pair (yes, no): softmax over the two logits.

    The same reads P(A better) from the logits of "A" and "B". sigmoid(yes - no) equals the
    two-way softmax and stays finite for logits of any size.
    """
    yes = jnp.asarray(yes_logit, dtype=jnp.float32)
    no = jnp.asarray(no_logit, dtype=jnp.float32)
    return jax.nn.sigmoid(yes - no)
