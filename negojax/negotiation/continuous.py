"""The continuous scheduler: dialogues that don't wait for each other (rollout.scheduler).

Lockstep (negojax.negotiation.lockstep) decodes turn t of every running dialogue
together, waits for the longest of them, then for the judge. Here each distinct model has a
`SlotCache` of `decode_slots` slots. A dialogue whose next turn may start takes a free slot of
its speaker's model: its prompt is prefilled between decode calls, all the turns that start
there in one prefill (prompts that share an opening compute it once, and with
prefix_cache_rows a prompt that opens like one prefilled earlier computes only the rest:
`PrefixCache`). Each decode call runs up
to `decode_chunk` steps over all of one model's slots, and a turn that ends frees its slot for
the next pending turn of any dialogue at the next call (which ends the call at once when such
a turn waits).

A turn's agreement check is issued as soon as it ends: with judge_workers=0 the turns that
ended in one round of decode calls are checked in one batched call right there (a local judge
shares the device with decoding); otherwise each such batch goes to a pool of judge_workers
threads (an HTTP judge) while decoding goes on. A dialogue's next turn is queued when its
verdict arrives; the rollout waits on the judge only when nothing is left to decode.

Scheduling changes neither what a dialogue says nor its verdicts: turn t of dialogue d draws
from `turn_key(seed, d, t)`, its k-th token from fold_in(that key, k), its prompt is the
windowed chat lockstep renders, and the same agreement_fn decides. So a seed gives the same
dialogues at any slot count, and greedy rollouts equal lockstep's token for token. A judge
call that raises ends the rollout with its error and a failed judgement (NaN) reads "not
agreed", as in lockstep.

Only the windowed context mode (context_turns=k) runs here (NegotiationConfig says so for the
full history), and only seats played by negojax models (an ExternalSeat opponent runs
lockstep); final solutions are written after the last turn, in one batched call as in
lockstep.
"""
from __future__ import annotations

import concurrent.futures
import time

import numpy as np

from negojax.negotiation.engine import sampled_turn
from negojax.negotiation.external_seats import ExternalSeat
from negojax.negotiation.schedulers import distinct_models
from negojax.sampling import SamplingParams
from negojax.sampling.slots import SlotCache


def turn_key(seed: int, dialogue: int, turn: int) -> np.ndarray:
    """The raw RNG key (uint32 [2]) of turn `turn` of dialogue `dialogue` (its entry index)."""
    return np.random.SeedSequence([seed, dialogue, turn]).generate_state(2, np.uint32)


def _union_seconds(intervals) -> float:
    """Seconds covered by at least one (start, end) interval."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


class _Judging:
    """Agreement checks issued as turns end, answered as (dialogues, agreed) batches.

    stats: time_agreement_s is the time the rollout waited on the judge; time_judge_busy_s
    the time at least one check was running."""

    def __init__(self, agreement_fn, workers: int, stats: dict):
        self.agreement_fn = agreement_fn
        self.stats = stats
        self.pool = concurrent.futures.ThreadPoolExecutor(workers) if workers else None
        self.in_flight: list[tuple[concurrent.futures.Future, list[int]]] = []
        self.answered: list[tuple[list[int], np.ndarray]] = []
        self.busy: list[tuple[float, float]] = []

    def _check(self, states) -> np.ndarray:
        start = time.perf_counter()
        try:
            return np.asarray(self.agreement_fn(states), bool)
        finally:
            self.busy.append((start, time.perf_counter()))

    def issue(self, dialogues: list[int], states) -> None:
        batch = [states[i] for i in dialogues]
        if self.pool is None:
            start = time.perf_counter()
            self.answered.append((dialogues, self._check(batch)))
            self.stats["time_agreement_s"] += time.perf_counter() - start
        else:
            self.in_flight.append((self.pool.submit(self._check, batch), dialogues))

    @property
    def pending(self) -> bool:
        return bool(self.in_flight)

    def verdicts(self, wait: bool) -> list[tuple[list[int], np.ndarray]]:
        """Every batch answered so far; with `wait`, blocks until at least one is."""
        if wait and self.in_flight and not self.answered:
            start = time.perf_counter()
            concurrent.futures.wait([f for f, _ in self.in_flight],
                                    return_when=concurrent.futures.FIRST_COMPLETED)
            self.stats["time_agreement_s"] += time.perf_counter() - start
        out, self.answered = self.answered, []
        still = []
        for future, dialogues in self.in_flight:
            if future.done():
                out.append((dialogues, future.result()))  # a judge's error surfaces here
            else:
                still.append((future, dialogues))
        self.in_flight = still
        return out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        self.stats["time_judge_busy_s"] += _union_seconds(self.busy)


def play_turns(engine, states, systems, seat_params, sessions, *, seed: int, stats: dict,
               progress) -> None:
    """Every dialogue's turns and verdicts into `states`, as the lockstep loop leaves them
    (the windowed mode only: `sessions` is None, NegotiationConfig sees to it)."""
    del sessions
    model_of_seat, models = distinct_models(seat_params)
    if any(isinstance(m, ExternalSeat) for m in models):
        raise ValueError("rollout.scheduler: 'continuous' decodes in slots of negojax models; a "
                         "seat played by an ExternalSeat needs scheduler=lockstep")
    cfg = engine.config
    limit = cfg.turn_limit(len(model_of_seat))
    sampling = SamplingParams(cfg.temperature, cfg.top_p)
    pools = [SlotCache(params, engine.model_config, cfg.decode_slots, rules=engine.rules,
                       prefix_rows=cfg.prefix_cache_rows) for params in models]
    writing = [{} for _ in pools]  # per pool: slot -> (dialogue, prompt, tokens, logp parts)
    waiting = list(range(len(states)))  # dialogues whose next turn may start

    def next_model(i: int) -> int:
        """The model that speaks dialogue i's next turn."""
        return model_of_seat[states[i].speaker(len(states[i].turns))]

    judging = _Judging(engine.agreement_fn, cfg.judge_workers, stats)
    progress(f"rollout: {len(states)} dialogues over {cfg.decode_slots} slots per model")
    try:
        while waiting or judging.pending or any(writing):
            for m, pool in enumerate(pools):
                free = pool.free_slots()
                take = [i for i in waiting if next_model(i) == m][:len(free)]
                if not take:
                    continue
                waiting = [i for i in waiting if i not in take]
                start = time.perf_counter()
                prompts = [engine.windowed_prompt(states[i], systems[i], len(states[i].turns))
                           for i in take]
                pool.insert(free[:len(take)], prompts,
                            [turn_key(seed, i, len(states[i].turns)) for i in take],
                            cfg.max_new_tokens)
                stats["time_generate_s"] += time.perf_counter() - start
                for slot, i, prompt in zip(free, take, prompts):
                    writing[m][slot] = (i, prompt, [], [])
            ended = []
            for m, pool in enumerate(pools):
                if not writing[m]:
                    continue
                start = time.perf_counter()
                # A turn waiting for this model takes the first slot that frees.
                queued = any(next_model(i) == m for i in waiting)
                out = pool.decode(cfg.decode_chunk, sampling, stop_ids=engine.stop_ids,
                                  until_free=queued)
                stats["time_generate_s"] += time.perf_counter() - start
                stats["sampler_calls"] += 1
                stats["decode_slot_steps"] += out.steps * out.rows
                for slot, new in out.tokens.items():
                    _, _, tokens, logp = writing[m][slot]
                    tokens += new
                    logp.append(out.policy_logp[slot])
                    stats["generated_tokens"] += len(new)
                    stats["decode_tokens"] += len(new)
                for slot, finished in out.ended.items():
                    i, prompt, tokens, logp = writing[m].pop(slot)
                    s = states[i]
                    s.turns.append(sampled_turn(engine.tokenizer, s.speaker(len(s.turns)),
                                                tokens, np.concatenate(logp), finished, prompt))
                    ended.append(i)
            if ended:
                judging.issue(sorted(ended), states)
            for dialogues, agreed in judging.verdicts(wait=not (waiting or any(writing))):
                for i, ok in zip(dialogues, agreed):
                    s = states[i]
                    if ok:
                        s.agreed, s.agreement_turn = True, len(s.turns)
                    elif len(s.turns) < limit:
                        waiting.append(i)
    finally:
        judging.close()
        stats["prompt_tokens_reused"] += sum(p.prefixes.tokens_reused for p in pools
                                             if p.prefixes is not None)
