"""Which advantage each trained token gets (`rl.credit`).

- ``dialogue``: every token of a dialogue gets the dialogue's group-relative advantage (the
  method's GRPO).
- ``seat``: role-conditioned baselines (SPIRAL's role-conditioned advantage estimation): a
  seat's sample is compared only with the same seat's samples of its group. Every seat's reward
  is the dialogue's collective reward, so this differs from ``dialogue`` when the group mixes
  the policy's seats (``rollout.policy_seats=rotate``): the opener's and the responder's
  dialogues no longer share one baseline.
- ``turn``: per-turn credit by potential-based shaping. The environment's potential Φ after
  each turn (`Environment.potentials`: the quality of what is on the table) shapes the turn
  rewards r_t = Φ(s_{t+1}) - Φ(s_t), with Φ(s_0) = 0 before the first turn and Φ = 0 at the end,
  where the outcome reward R is paid. The return from turn t is then R - Φ(s_t): the outcome
  less what the state was already worth when the turn began. Because Φ at the end is 0 whatever
  turn ends the dialogue, the shaped return of a whole dialogue is exactly R, so a policy that
  decides when to stop gains nothing from the shaping, and Φ(s_t), which the turn's own tokens
  do not affect, is a baseline: the gradient stays unbiased. Each turn index (and the final
  solution, as one more turn) then gets its own group baseline over the dialogues that trained
  a turn there.

Every function here is NumPy over the rollout's host-side records.

Credit assignments register (``rl.credit``, `CREDITS`): each is a `Credit`, whose
``assign(method, rewards, valid, sequences, dialogues, potentials)`` returns the advantage of
every token of each sequence, whose ``potentials`` says whether it reads the environment's
potentials (the trainer asks the environment for them only then), and whose ``per_seat`` says
whether it reads per-seat rewards [P, G, seats] (reward.mode own or mixed) rather than one
reward per dialogue [P, G].
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import numpy as np

from negojax.registry import Registry
from negojax.rl.advantages import advantages, slot_advantages


@dataclasses.dataclass(frozen=True)
class Credit:
    """One credit assignment (see the module docstring)."""
    assign: Callable
    potentials: bool = False
    per_seat: bool = False


def _is_credit(name: str, obj) -> None:
    if not isinstance(obj, Credit):
        raise ValueError(f"rl.credit: {name!r} is not a negojax.rl.credit.Credit")


CREDITS = Registry("rl.credit", {"dialogue": "negojax.rl.credit:DIALOGUE",
                                 "seat": "negojax.rl.credit:SEAT",
                                 "turn": "negojax.rl.credit:TURN"}, check=_is_credit)


def shaped_turn_rewards(outcome: float, potentials: Sequence[float]) -> np.ndarray:
    """The rewards of turns 0..n-1 and of the final-solution slot n after them, for a dialogue
    of n turns whose potential after turn t is potentials[t] and whose outcome is `outcome`."""
    phi = np.concatenate([[0.0], np.asarray(potentials, np.float64), [0.0]])  # s_0 .. end
    rewards = phi[1:] - phi[:-1]
    rewards[-1] += outcome
    return rewards


def turn_returns(outcome: float, potentials: Sequence[float]) -> np.ndarray:
    """The return from each turn and the final-solution slot: the shaped rewards summed from
    there on (R - Φ(s_t))."""
    return np.cumsum(shaped_turn_rewards(outcome, potentials)[::-1])[::-1]


def _trained_slots(sequences, shape, slot) -> np.ndarray:
    """mask [P, G, slots]: where some sequence has trained tokens in that slot; `slot(sequence)`
    gives the slot of each of the sequence's tokens (-1 where none)."""
    mask = np.zeros(shape, bool)
    for s in sequences:
        slots = slot(s)[np.asarray(s.loss_mask, bool)]
        mask[s.prompt_index, s.group_index, slots[slots >= 0]] = True
    return mask


def token_advantages(credit: str, method: str, rewards: np.ndarray, valid: np.ndarray,
                     sequences: Sequence, dialogues: Sequence[dict],
                     potentials: Optional[Sequence[Sequence[float]]] = None) -> list[np.ndarray]:
    """The advantage of every token of each sequence (read where its loss mask is 1), by the
    credit assignment `credit` names.

    `rewards`, `valid` [P, G]: the outcome reward and whether it counts; `dialogues` the P*G
    transcript records (p-major); `potentials` each dialogue's Φ after each of its turns (turn
    credit; None: Φ = 0).
    """
    return CREDITS.get(credit).assign(method, rewards, np.asarray(valid, bool), sequences,
                                      dialogues, potentials)


def _dialogue_credit(method, rewards, valid, sequences, dialogues, potentials):
    """Every token of a dialogue: the dialogue's group-relative advantage."""
    adv = np.asarray(advantages(rewards, method, valid=valid))
    return [np.full(len(s.tokens), adv[s.prompt_index, s.group_index], np.float32)
            for s in sequences]


def _seat_credit(method, rewards, valid, sequences, dialogues, potentials):
    """A seat's tokens: compared only with the same seat's samples of the group, on the seat's
    own reward when `rewards` has one per seat [P, G, seats], else on the dialogue's."""
    P, G = rewards.shape[:2]
    seats = max(len(d["personas"]) for d in dialogues)
    mask = _trained_slots(sequences, (P, G, seats),
                          lambda s: np.where(np.asarray(s.agent) >= 0, s.seat, -1))
    per_seat = rewards[..., :seats] if rewards.ndim == 3 else np.repeat(rewards[..., None],
                                                                        seats, -1)
    adv = np.asarray(slot_advantages(per_seat, method, valid=mask & valid[..., None]))
    return [np.full(len(s.tokens), adv[s.prompt_index, s.group_index, s.seat], np.float32)
            for s in sequences]


def _turn_credit(method, rewards, valid, sequences, dialogues, potentials):
    """A turn's tokens: its shaped return against the same turn index's group baseline."""
    P, G = rewards.shape
    turns = [len(d["turns"]) for d in dialogues]
    final = max(turns)  # the final solution's slot, after the longest dialogue's turns

    def slot_of(s):
        """Each token's slot: its turn, the final solution (turn index = the dialogue's turn
        count) in the last slot."""
        turn = np.asarray(s.turn)
        n = turns[s.prompt_index * G + s.group_index]
        return np.where(turn == n, final, turn)

    returns = np.zeros((P, G, final + 1))
    for k, d in enumerate(dialogues):
        phi = np.zeros(turns[k]) if potentials is None else np.asarray(potentials[k], np.float64)
        if phi.shape != (turns[k],):
            raise ValueError(f"potentials of dialogue {k}: {phi.shape[0]} values for its "
                             f"{turns[k]} turns; give one per turn")
        per_turn = turn_returns(float(rewards.flat[k]), phi)
        returns[k // G, k % G, :turns[k]] = per_turn[:-1]
        returns[k // G, k % G, final] = per_turn[-1]
    mask = _trained_slots(sequences, returns.shape, slot_of) & valid[..., None]
    adv = np.asarray(slot_advantages(returns, method, valid=mask))
    out = []
    for s in sequences:
        slots = slot_of(s)
        out.append(np.where(slots >= 0, adv[s.prompt_index, s.group_index,
                                            np.maximum(slots, 0)], 0.0).astype(np.float32))
    return out


DIALOGUE = Credit(_dialogue_credit)
SEAT = Credit(_seat_credit, per_seat=True)
TURN = Credit(_turn_credit, potentials=True)


def groups_with_signal(token_adv: Sequence[np.ndarray], sequences: Sequence,
                       num_prompts: int) -> np.ndarray:
    """bool [P]: whether any trained token of the prompt's group has a nonzero advantage; a
    group without one adds nothing to the policy gradient (DAPO's dynamic sampling drops it)."""
    signal = np.zeros(num_prompts, bool)
    for adv, s in zip(token_adv, sequences):
        if np.any(np.abs(adv[np.asarray(s.loss_mask, bool)]) > 0):
            signal[s.prompt_index] = True
    return signal


def advantages_by_turn(token_adv: Sequence[np.ndarray], sequences: Sequence
                       ) -> dict[tuple[int, int], dict[int, float]]:
    """{(prompt, group): {turn: advantage}} over the trained tokens, for the transcripts: what
    credit each of the policy's turns got (a turn's tokens share one value under every
    credit)."""
    out: dict[tuple[int, int], dict[int, float]] = {}
    for adv, s in zip(token_adv, sequences):
        trained = np.asarray(s.loss_mask, bool)
        turns = out.setdefault((s.prompt_index, s.group_index), {})
        for t in np.unique(np.asarray(s.turn)[trained]):
            turns[int(t)] = float(adv[trained & (np.asarray(s.turn) == t)][0])
    return out
