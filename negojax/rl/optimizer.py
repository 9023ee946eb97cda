"""AdamW with linear warmup, cosine decay and global-norm clipping."""
from __future__ import annotations

import optax


def learning_rate_schedule(peak: float, warmup_steps: int, total_steps: int,
                           final_fraction: float) -> optax.Schedule:
    """0 -> peak linearly over warmup_steps, then cosine down to peak * final_fraction."""
    if total_steps <= warmup_steps:
        raise ValueError(f"total_steps: {total_steps} must exceed warmup_steps ({warmup_steps})")
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if warmup_steps else peak, peak_value=peak, warmup_steps=warmup_steps,
        decay_steps=total_steps, end_value=peak * final_fraction)


def make_optimizer(hp) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer and its schedule from TrainHParams (clipping happens before Adam).

    The schedule is one of training steps, while optax counts optimizer updates: with
    `num_inner_updates` k, each step makes k updates, all at that step's rate (otherwise the
    cosine would end after total_steps / k steps)."""
    by_step = learning_rate_schedule(hp.learning_rate, hp.warmup_steps, hp.total_steps,
                                     hp.final_lr_fraction)

    def schedule(update_count):
        return by_step(update_count // hp.num_inner_updates)
    tx = optax.chain(
        optax.clip_by_global_norm(hp.max_grad_norm),
        optax.adamw(schedule, b1=hp.adam_b1, b2=hp.adam_b2, eps=hp.adam_eps,
                    weight_decay=hp.weight_decay),
    )
    return tx, schedule
