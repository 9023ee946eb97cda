"""Turn schedulers (`rollout.scheduler`): how a rollout's dialogues take their turns.

A scheduler is a function

    play_turns(engine, states, systems, seat_params, sessions, *, seed, stats, progress) -> None

that appends every dialogue's turns to its `DialogueState` and marks the agreements, as the
engine's agreement check decides, through the engine's public turn methods (`speak_windowed`,
`speak_in_session`, `speak_external`, `windowed_prompt`, `agreement_fn`). `sessions` holds one
Session per seat in the full-history mode (context_turns=None), else None; `stats` adds up the
sampler's counters (negojax.negotiation.engine names them); `progress(text)` hears each phase.
The engine writes the final solutions afterwards, whatever the scheduler.

Built in: "lockstep" (negojax.negotiation.lockstep) and "continuous"
(negojax.negotiation.continuous); another is `--config.rollout.scheduler=my_pkg.my_module:fn`
or `SCHEDULERS.register("name", fn)`.
"""
from __future__ import annotations

from negojax.registry import Registry

SCHEDULERS = Registry("rollout.scheduler", {
    "lockstep": "negojax.negotiation.lockstep:play_turns",
    "continuous": "negojax.negotiation.continuous:play_turns",
})


def distinct_models(seat_params) -> tuple[list[int], list]:
    """Model index per seat and the distinct params objects, in seat order (models are told
    apart by params object identity)."""
    models, index = [], {}
    for params in seat_params:
        if id(params) not in index:
            index[id(params)] = len(models)
            models.append(params)
    return [index[id(p)] for p in seat_params], models
