"""The lockstep scheduler (rollout.scheduler=lockstep, the default): every running dialogue
speaks each turn, grouped into one batched sampler call per model (per seat in the
full-history mode, each seat's Session), then one agreement check covers them all."""
from __future__ import annotations

import time

import numpy as np

from negojax.negotiation.engine import derived_seed
from negojax.negotiation.external_seats import ExternalSeat
from negojax.negotiation.schedulers import distinct_models
from negojax.sampling import SamplingParams
from negojax.shapes import batch_bucket


def play_turns(engine, states, systems, seat_params, sessions, *, seed: int, stats: dict,
               progress) -> None:
    cfg = engine.config
    num_seats = len(seat_params)
    model_of_seat, models = distinct_models(seat_params)
    sampling = SamplingParams(cfg.temperature, cfg.top_p)
    limit = cfg.turn_limit(num_seats)
    for t in range(limit):
        running = [i for i, s in enumerate(states) if not s.agreed]
        if not running:
            break
        progress(f"rollout turn {t + 1}/{limit} ({len(running)} dialogues)")
        if sessions is None:  # one call per model
            groups = [[i for i in running if model_of_seat[states[i].speaker(t)] == m]
                      for m in range(len(models))]
        else:  # one call per seat: its Session
            groups = [[i for i in running if states[i].speaker(t) == seat]
                      for seat in range(num_seats)]
        for g, rows in enumerate(groups):
            if not rows:
                continue
            start = time.perf_counter()
            speaker = models[g] if sessions is None else seat_params[g]
            turn_seed = derived_seed(seed, t, g)
            if isinstance(speaker, ExternalSeat):
                new_turns = engine.speak_external(states, systems, rows, t, speaker, sampling,
                                                  turn_seed)
            elif sessions is None:
                new_turns = engine.speak_windowed(states, systems, rows, t, models[g], sampling,
                                                  turn_seed)
            else:
                new_turns = engine.speak_in_session(states, systems, rows, t, sessions[g],
                                                    sampling, turn_seed)
            stats["time_generate_s"] += time.perf_counter() - start
            stats["sampler_calls"] += 1
            # The decode loop steps every (bucketed) row until the longest turn ends.
            stats["decode_slot_steps"] += batch_bucket(len(rows)) * max(
                len(turn.tokens) for turn in new_turns)
            for i, turn in zip(rows, new_turns):
                states[i].turns.append(turn)
                stats["generated_tokens"] += len(turn.tokens)
                stats["decode_tokens"] += len(turn.tokens)
        start = time.perf_counter()
        agreed = np.asarray(engine.agreement_fn([states[i] for i in running]), bool)
        elapsed = time.perf_counter() - start
        stats["time_agreement_s"] += elapsed
        stats["time_judge_busy_s"] += elapsed
        for i, ok in zip(running, agreed):
            if ok:
                states[i].agreed, states[i].agreement_turn = True, t + 1
