"""The arithmetic of a resource split: pools, private values, every allocation, welfare, Pareto
optimality, and the seeded generator of disjoint train and eval games.

A game is a pool of items of a few kinds (1 to 4 of each) and, for each of 2 to 4 parties, private
non-negative integer values per item kind that make the whole pool worth TOTAL_VALUE points to
that party (Deal or No Deal's valuation; Lewis et al., 2017). An allocation gives every item to
one party; a party's utility is the points of what it receives.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Iterator, Sequence

import numpy as np

ITEM_KINDS = ("book", "hat", "ball")
TOTAL_VALUE = 10
MAX_COUNT = 4
WELFARES = ("nash", "sum")


@dataclasses.dataclass(frozen=True)
class Game:
    counts: tuple[int, ...]               # items of each kind in the pool
    values: tuple[tuple[int, ...], ...]   # values[party][kind]: points per item, private

    @property
    def parties(self) -> int:
        return len(self.values)

    def utilities(self, allocation: np.ndarray) -> np.ndarray:
        """[..., parties] points of allocations [..., parties, kinds]."""
        return np.einsum("...pk,pk->...p", allocation, np.asarray(self.values))


@functools.lru_cache(maxsize=4096)
def _splits(count: int, parties: int) -> np.ndarray:
    """Every way to give `count` identical items to `parties` parties: [S, parties]."""
    return np.asarray([c for c in itertools.product(range(count + 1), repeat=parties)
                       if sum(c) == count], np.int64)


@functools.lru_cache(maxsize=4096)
def allocations(counts: tuple[int, ...], parties: int) -> np.ndarray:
    """Every allocation of the pool: [A, parties, kinds]."""
    per_kind = [_splits(c, parties) for c in counts]
    index = np.stack(np.meshgrid(*[np.arange(len(s)) for s in per_kind], indexing="ij"),
                     -1).reshape(-1, len(counts))
    return np.stack([per_kind[k][index[:, k]] for k in range(len(counts))], axis=-1)


def welfare_of(utilities: np.ndarray, kind: str) -> np.ndarray:
    """Unnormalised welfare of utility vectors [..., parties]: the sum, or the Nash product's
    geometric mean (so its ratio to the best is on the points' own scale)."""
    u = np.asarray(utilities, np.float64)
    if kind == "sum":
        return u.sum(-1)
    return np.prod(u, -1) ** (1.0 / u.shape[-1])


@functools.lru_cache(maxsize=8192)
def _achievable(game: Game) -> np.ndarray:
    """Utility vectors of every allocation: [A, parties]."""
    return game.utilities(allocations(game.counts, game.parties))


def welfare(game: Game, allocation, kind: str) -> float:
    """The allocation's welfare normalised by the best any allocation achieves: in [0, 1]."""
    if kind not in WELFARES:
        raise ValueError(f"env.welfare: {kind!r} is not one of {', '.join(WELFARES)}")
    best = welfare_of(_achievable(game), kind).max()
    return float(welfare_of(game.utilities(np.asarray(allocation)), kind) / best)


def pareto_optimal(game: Game, allocation) -> bool:
    """No allocation gives every party at least as much and some party more."""
    u = game.utilities(np.asarray(allocation))
    others = _achievable(game)
    return not bool(np.any(np.all(others >= u, -1) & np.any(others > u, -1)))


@functools.lru_cache(maxsize=256)
def value_vectors(counts: tuple[int, ...]) -> np.ndarray:
    """Every per-kind valuation worth TOTAL_VALUE points over the pool: [V, kinds]."""
    grid = np.asarray(list(itertools.product(range(TOTAL_VALUE + 1), repeat=len(counts))))
    return grid[grid @ np.asarray(counts) == TOTAL_VALUE]


def draw_game(rng: np.random.Generator, parties: int) -> Game:
    """A pool of 1 to MAX_COUNT items of each kind and each party's private values. Parties value
    the pool differently (or there is nothing to negotiate), and some allocation gives every
    party points (so the Nash welfare has a best above 0)."""
    while True:
        counts = tuple(int(c) for c in rng.integers(1, MAX_COUNT + 1, len(ITEM_KINDS)))
        vectors = value_vectors(counts)
        if not len(vectors):  # e.g. 4 of each kind: no integer values make 10 points
            continue
        values = tuple(tuple(int(v) for v in vectors[i])
                       for i in rng.integers(0, len(vectors), parties))
        if len(set(values)) < 2:
            continue
        game = Game(counts, values)
        if welfare_of(_achievable(game), "nash").max() > 0:
            return game


def _stream(seed: int, stream: int, parties: Sequence[int]) -> Iterator[Game]:
    rng = np.random.default_rng([seed, stream])
    for k in itertools.count():
        yield draw_game(rng, parties[k % len(parties)])


def seatless(game: Game) -> tuple:
    """What a game is whoever sits where: its pool and its parties' values in any order (a
    training game with the seats swapped is the same game to a policy that plays every seat)."""
    return game.counts, tuple(sorted(game.values))


def split_games(seed: int, parties: Sequence[int], sizes: dict[str, int]) -> dict[str, list[Game]]:
    """{"eval": ..., "train": ...}: distinct games, none in both splits, not even with its seats
    permuted (`seatless`). Each split has a random stream of its own, so the eval set does not
    depend on the train set's size; the party counts take turns. The train stream skips every
    game of the eval set in any seat order."""
    out: dict[str, list[Game]] = {}
    held_out: set[tuple] = set()
    for stream, split in enumerate(("eval", "train")):
        games, seen = [], set()
        for game in _stream(seed, stream, tuple(parties)):
            if len(games) == sizes[split]:
                break
            if game not in seen and seatless(game) not in held_out:
                seen.add(game)
                games.append(game)
        if split == "eval":
            held_out = {seatless(g) for g in games}
        out[split] = games
    return out
