"""Reinforcement learning: group-relative advantages, the GRPO policy loss, the train step.

``negojax.rl.advantages(rewards, method)`` is the public entry for advantages (the function; the
module of the same name is reached with ``from negojax.rl.advantages import ...``).
"""
from negojax.rl.advantages import METHODS, advantages, slot_advantages, zero_advantage_fraction
from negojax.rl.losses import (AGGREGATIONS, KL_ESTIMATORS, advantage_stats, kl_penalty, mean_entropy,
                               policy_loss, policy_loss_terms, token_metrics)
from negojax.rl.batch import TrainBatch, loss_positions
from negojax.rl.optimizer import learning_rate_schedule, make_optimizer
from negojax.rl.packing import pack_sequences, train_batch
from negojax.rl.train_step import (TrainHParams, combine, init_train_state, make_train_step,
                                   place_batch, sequence_logprobs, state_shardings)
