"""Reference policies of a resource split: the allocations a skeptic compares a trained model
with, each computed from a game alone (no model, no dialogue).

- ``take_all_seat<s>``: seat s gets the whole pool (the deal an untrained opener proposes by
  copying the format it is shown).
- ``even_split``: every kind divided as evenly as the items allow; the items left over go round
  the parties in seat order, continuing across kinds (so no party gets every odd item).
- ``uniform_random``: an allocation drawn uniformly from all of them; its metrics are the
  average over every allocation of the game (over 256 of them, drawn with a fixed seed, in the
  games with more), the expectation rather than one draw's luck.
- ``keep_valued_seat0``: seat 0 keeps every kind it values above 0; the kinds it does not value
  are split evenly among the others.
- ``best_offer_seat0``: the allocation seat 0 would offer knowing only its own values: the one
  whose welfare, averaged over every valuation the others might hold (each worth the pool's
  points), is highest (over 64 valuations drawn with a fixed seed per other party when there
  are more than 2 parties).
- ``nash_optimal`` and ``sum_optimal``: the best allocation by each welfare, knowing every
  party's values (welfare 1 by construction for its own kind).

`reference_allocations(game, welfare_kind)` gives each policy's allocations [n, parties, kinds]
(one for all but uniform_random); the environment measures them as it measures a deal.
"""
from __future__ import annotations

import numpy as np

from negojax.environments.resource_games import Game, allocations, value_vectors, welfare_of

RANDOM_ALLOCATIONS = 256
BELIEF_SAMPLES = 64


def _even(counts, parties: int, start: int = 0) -> np.ndarray:
    """[parties, kinds]: each kind divided evenly, leftovers round the parties from `start`."""
    out = np.zeros((parties, len(counts)), np.int64)
    turn = start
    for kind, count in enumerate(counts):
        out[:, kind] = count // parties
        for _ in range(count % parties):
            out[turn % parties, kind] += 1
            turn += 1
    return out


def take_all(game: Game, seat: int) -> np.ndarray:
    out = np.zeros((game.parties, len(game.counts)), np.int64)
    out[seat] = game.counts
    return out


def even_split(game: Game) -> np.ndarray:
    return _even(game.counts, game.parties)


def keep_valued(game: Game) -> np.ndarray:
    """Seat 0 keeps the kinds it values; the others share the rest evenly."""
    out = np.zeros((game.parties, len(game.counts)), np.int64)
    valued = np.asarray(game.values[0]) > 0
    out[0, valued] = np.asarray(game.counts)[valued]
    rest = np.where(valued, 0, np.asarray(game.counts))
    out[1:] = _even(rest, game.parties - 1)
    return out


def _optimal(game: Game, kind: str) -> np.ndarray:
    every = allocations(game.counts, game.parties)
    return every[int(np.argmax(welfare_of(game.utilities(every), kind)))]


def best_offer(game: Game, kind: str) -> np.ndarray:
    """Seat 0's best guess from its own values: the allocation of highest welfare (normalised
    by each valuation's best) averaged over the valuations the others might hold."""
    every = allocations(game.counts, game.parties)
    vectors = value_vectors(game.counts)
    others = game.parties - 1
    if others == 1:
        beliefs = vectors[:, None, :]
    else:
        rng = np.random.default_rng(0)
        beliefs = vectors[rng.integers(0, len(vectors), (BELIEF_SAMPLES, others))]
    mine = np.broadcast_to(np.asarray(game.values[0]), (len(beliefs), 1, len(game.counts)))
    values = np.concatenate([mine, beliefs], axis=1)               # [B, parties, kinds]
    utilities = np.einsum("apk,bpk->bap", every, values)           # [B, A, parties]
    welfare = welfare_of(utilities, kind)                         # [B, A]
    best = welfare.max(axis=1, keepdims=True)
    expected = np.where(best > 0, welfare / np.where(best > 0, best, 1.0), 0.0).mean(axis=0)
    return every[int(np.argmax(expected))]


def uniform_random(game: Game) -> np.ndarray:
    every = allocations(game.counts, game.parties)
    if len(every) <= RANDOM_ALLOCATIONS:
        return every
    return every[np.random.default_rng(0).choice(len(every), RANDOM_ALLOCATIONS, replace=False)]


def reference_allocations(game: Game, welfare_kind: str) -> dict[str, np.ndarray]:
    """Each reference policy's allocations [n, parties, kinds] for `game`."""
    out = {f"take_all_seat{s}": take_all(game, s)[None] for s in range(game.parties)}
    out["even_split"] = even_split(game)[None]
    out["uniform_random"] = uniform_random(game)
    out["keep_valued_seat0"] = keep_valued(game)[None]
    out["best_offer_seat0"] = best_offer(game, welfare_kind)[None]
    out["nash_optimal"] = _optimal(game, "nash")[None]
    out["sum_optimal"] = _optimal(game, "sum")[None]
    return out

