"""Self-play rollout throughput: one batch of prompts x G dialogues through the negotiation
engine, with judge calls, and where its time goes; then how a dialogue's cost grows with turns.

Time is split by timing around the engine's injectable parts (the sampler's own `sample`, run
on a timed Session), never inside jitted code:
prefill = Session.extend (synchronised on its logits), decode = Session.generate (returns host
arrays, so it is synchronised), judge = agreement checks and CA scores, host = the rest of the
wall clock (prompt rendering, tokenisation, bookkeeping, Python between calls).

Part 1 runs the batch twice with the same seed: the first call compiles, the second reuses
every program (what a training step after the first sees).
Part 2 forces every dialogue to run N turns of exactly --scaling-tokens tokens (no agreement,
stop ids ignored) and compares full-history continuation in a Session (context_turns=None)
against re-encoding the whole history as a fresh prompt every turn (context_turns=N).
Part 3 (--schedulers) runs the default config's rollout under rollout.scheduler=lockstep and
=continuous: with the local judge; with an HTTP judge on 127.0.0.1 that waits 0.5 s per call;
and with turn lengths that vary (a turn also ends at its first "."). Each row is the second of
two same-seed rollouts (the first compiles). Slot utilisation is tokens kept over slot-steps
decoded (rows a decode step ran over x steps); judge wait is the time the rollout blocked on
agreement checks; decode busy is time_generate_s (prefill and decode) and judge busy the time
at least one check ran.

  python benchmarks/rollout.py                          # embedded SmolLM2, default-config shape
  python benchmarks/rollout.py --agreement marker --scaling-turns 8
  python benchmarks/rollout.py --turns 0 --scaling-turns 0 --schedulers
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The OpenAI-compatible test server on 127.0.0.1 stands in for a remote judge.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests", "helpers"))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import negojax  # noqa: E402
from common import measure_bandwidth_gbs, record, roofline_tokens_per_s, table  # noqa: E402
from negojax.api import resolve_model_dir  # noqa: E402
from negojax.data import load_tasks  # noqa: E402
from negojax.negotiation.agreement import agreement_check  # noqa: E402
from negojax.negotiation.config import NegotiationConfig  # noqa: E402
from negojax.negotiation.engine import NegotiationEngine  # noqa: E402
from negojax.rewards import HttpJudge, LocalJudge  # noqa: E402
from openai_server import start_server, stop_server, varied_judge  # noqa: E402
from negojax.sampling import Session  # noqa: E402
from negojax.sampling import sampler as sampler_module  # noqa: E402
from negojax.negotiation import continuous as continuous_module  # noqa: E402
from negojax.sampling.slots import SlotCache  # noqa: E402
from negojax.tokenization import load_tokenizer  # noqa: E402


class Clock:
    """Seconds and token counts per kind of work, and per dialogue turn."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.turn = 0
        self.events: list[tuple[str, int, float, int]] = []  # (kind, turn, seconds, tokens)

    def add(self, kind: str, seconds: float, tokens: int = 0):
        self.events.append((kind, self.turn, seconds, tokens))

    def total(self, kind: str, turn=None) -> float:
        return sum(s for k, t, s, _ in self.events if k == kind and turn in (None, t))

    def tokens(self, kind: str, turn=None) -> int:
        return sum(n for k, t, _, n in self.events if k == kind and turn in (None, t))


def timed_session_cls(clock: Clock):
    class TimedSession(Session):
        def extend(self, token_lists):
            start = time.perf_counter()
            super().extend(token_lists)
            jax.block_until_ready(self.logits)
            clock.add("prefill", time.perf_counter() - start, sum(map(len, token_lists)))

        def generate(self, *args, **kwargs):
            start = time.perf_counter()
            out = super().generate(*args, **kwargs)  # returns host lists: synchronised
            clock.add("decode", time.perf_counter() - start, sum(map(len, out.tokens)))
            return out

    return TimedSession


def timed_slots(clock: Clock):
    """SlotCache with insert (synchronised on the cache) timed as prefill and decode as
    decode, the continuous scheduler's counterpart of the timed Session."""
    class TimedSlots(SlotCache):
        def insert(self, slots, prompts, keys, budget):
            start = time.perf_counter()
            super().insert(slots, prompts, keys, budget)
            jax.block_until_ready(self.cache)
            clock.add("prefill", time.perf_counter() - start, sum(map(len, prompts)))

        def decode(self, *args, **kwargs):
            start = time.perf_counter()
            out = super().decode(*args, **kwargs)  # returns host lists: synchronised
            clock.add("decode", time.perf_counter() - start, sum(map(len, out.tokens.values())))
            return out

    return TimedSlots


def timed_sample_fn(clock: Clock):
    """`negojax.sampling.sample` itself, with its Session swapped for the timed one per call."""
    session_cls = timed_session_cls(clock)

    def sample(*args, **kwargs):
        plain = sampler_module.Session
        sampler_module.Session = session_cls
        try:
            return sampler_module.sample(*args, **kwargs)
        finally:
            sampler_module.Session = plain

    return sample


class TimedJudge:
    """Times a judge's batched calls; the same interface for the engine and the scorer."""

    def __init__(self, judge, clock: Clock):
        self.judge, self.clock = judge, clock

    def _timed(self, name, *args):
        start = time.perf_counter()
        out = getattr(self.judge, name)(*args)
        self.clock.add("judge", time.perf_counter() - start, len(args[0]))
        return out

    def agreement(self, *args):
        return self._timed("agreement", *args)

    def ca_score(self, *args):
        return self._timed("ca_score", *args)


def counting_turns(agreement_fn, clock: Clock):
    """The engine checks agreement once after every turn: use it to advance the turn index."""
    def check(states):
        out = agreement_fn(states)
        clock.turn += 1
        return out
    return check


def never_agree(states):
    return np.zeros(len(states), bool)


def make_engine(cfg: NegotiationConfig, model, clock: Clock, agreement_fn) -> NegotiationEngine:
    return NegotiationEngine(cfg, model.config, model.tokenizer, rules=model.rules,
                             agreement_fn=counting_turns(agreement_fn, clock),
                             sample_fn=timed_sample_fn(clock),
                             session_cls=timed_session_cls(clock))


def score_final_solutions(judge, tasks, rollout, group_size):
    rows = [k for k, s in enumerate(rollout.final_solutions) if s is not None]
    if rows:
        picked = [tasks[k // group_size] for k in rows]
        judge.ca_score([t.dilemma for t in picked], [t.personas for t in picked],
                       [rollout.final_solutions[k] for k in rows])


def run_batch(engine, judge, tasks, group_size, model, seed, clock):
    clock.reset()
    compiles = sum(sampler_module.TRACE_COUNTS.values())
    start = time.perf_counter()
    rollout = engine.rollout(tasks, group_size=group_size,
                             seat_params=[model.params, model.params], seed=seed)
    score_final_solutions(judge, tasks, rollout, group_size)
    wall = time.perf_counter() - start
    return rollout, wall, sum(sampler_module.TRACE_COUNTS.values()) - compiles


def throughput(args, model, tasks, judge_model) -> str:
    clock = Clock()
    judge = TimedJudge(LocalJudge(judge_model), clock)
    cfg = NegotiationConfig(max_turns=args.turns, context_turns=args.context_turns or None,
                            max_new_tokens=args.max_new_tokens,
                            final_max_new_tokens=args.final_max_new_tokens,
                            agreement=args.agreement)
    check = agreement_check(cfg.agreement, judge=judge, threshold=cfg.agreement_threshold,
                            marker=cfg.marker)
    engine = make_engine(cfg, model, clock, check)
    rows = []
    for label in ("first (compiles)", "second (warm)"):
        rollout, wall, traces = run_batch(engine, judge, tasks, args.group_size, model,
                                          args.seed, clock)
        dialogues = len(rollout.dialogues)
        generated = rollout.stats["generated_tokens"]
        parts = {k: clock.total(k) for k in ("prefill", "decode", "judge")}
        host = wall - sum(parts.values())
        share = lambda s: f"{100 * s / wall:.0f}%"
        rows.append([label, f"{wall:.1f}", f"{dialogues / wall:.3f}", generated / wall,
                     share(parts["prefill"]), share(parts["decode"]), share(parts["judge"]),
                     share(host), f"{rollout.agreed.mean():.2f}",
                     f"{rollout.rounds.mean():.1f}", traces])
    body = table(["run", "wall s", "dialogues/s", "generated tok/s", "prefill", "decode",
                  "judge", "host", "agreed", "mean turns", "sampler traces"], rows)
    decode_tokens = clock.tokens("decode")
    body += (f"\n\n{len(tasks)} prompts x G={args.group_size}, max {args.turns} turns of "
             f"{args.max_new_tokens} tokens, final solution {args.final_max_new_tokens}, "
             f"context_turns={cfg.context_turns}, agreement={cfg.agreement} "
             f"(LocalJudge on the policy model), CA score of every final solution by the same "
             f"judge. Warm run: {decode_tokens} tokens decoded in "
             f"{clock.total('decode'):.1f} s ({decode_tokens / max(clock.total('decode'), 1e-9):.1f}"
             f" tok/s inside generate), {clock.tokens('prefill')} tokens prefilled in "
             f"{clock.total('prefill'):.1f} s.")
    return body


def scaling(args, model, tasks) -> str:
    """Per-turn cost of continuation vs re-encoding, every dialogue forced to N full turns."""
    n = args.scaling_turns
    results = {}
    for label, context in (("continuation", None), ("re-encode", n)):
        clock = Clock()
        cfg = NegotiationConfig(max_turns=n, context_turns=context,
                                max_new_tokens=args.scaling_tokens, agreement="marker")
        engine = make_engine(cfg, model, clock, never_agree)
        engine.stop_ids = []  # every turn decodes exactly scaling_tokens: like for like
        for _ in range(2):  # the first run compiles
            _, wall, traces = run_batch(engine, None, tasks, args.scaling_group, model,
                                        args.seed, clock)
        results[label] = (clock, wall, traces)
    dialogues = len(tasks) * args.scaling_group
    rows, cumulative = [], {k: 0.0 for k in results}
    for t in range(n):
        row = [t + 1]
        for label, (clock, _, _) in results.items():
            turn_s = clock.total("prefill", t) + clock.total("decode", t)
            cumulative[label] += turn_s
            row += [clock.tokens("prefill", t) // dialogues, f"{turn_s:.2f}",
                    f"{cumulative[label] / dialogues:.3f}"]
        rows.append(row)
    headers = ["turns"]
    for label in results:
        headers += [f"{label}: prefill tok/dialogue", f"{label}: turn s",
                    f"{label}: cumulative s/dialogue"]
    body = table(headers, rows)
    walls = ", ".join(f"{k} {w:.1f} s wall ({tr} sampler traces in the timed run)"
                      for k, (_, w, tr) in results.items())
    body += (f"\n\n{len(tasks)} prompts x G={args.scaling_group}, {n} turns of exactly "
             f"{args.scaling_tokens} tokens (stop ids off, no agreement), second of two "
             f"same-seed runs; turn s = prefill + decode of that turn. {walls}.")
    return body


def slow_judge(index, body):
    reply = varied_judge(index, body)
    reply.delay_s = 0.5
    return reply


SCHEDULER_CASES = ("local", "http", "varied")


def schedulers(args, model, tasks) -> str:
    """Lockstep vs continuous on the default config's rollout, in the cases args.cases picks."""
    server = start_server(slow_judge)
    local = LocalJudge(model)
    http = HttpJudge(server.url, "judge", max_retries=0, concurrency=8)
    # Random weights seldom write a ".": there a 64th of the vocabulary ends a turn instead.
    varied_stops = (list(range(0, model.config.vocab_size, 64)) if args.random_init
                    else model.tokenizer.encode("."))
    scenarios = [c for c in [("local", "local judge", local, 0, []),
                             ("http", "HTTP judge, 0.5 s per call", http, args.judge_workers, []),
                             ("varied", "varied turn lengths (local judge)", local, 0,
                              varied_stops)] if c[0] in args.cases]
    bandwidth = measure_bandwidth_gbs() if args.roofline else None
    rows, by = [], {}
    try:
        for _, label, judge, workers, extra_stops in scenarios:
            for scheduler in ("lockstep", "continuous"):
                cfg = NegotiationConfig(max_rounds=1, max_new_tokens=args.max_new_tokens,
                                        final_max_new_tokens=args.final_max_new_tokens,
                                        context_turns=2, agreement_threshold=0.3,
                                        scheduler=scheduler, decode_slots=args.slots,
                                        decode_chunk=args.chunk, judge_workers=workers,
                                        prefix_cache_rows=args.prefix_rows)
                clock = Clock()
                engine = NegotiationEngine(cfg, model.config, model.tokenizer, rules=model.rules,
                                           judge=judge, sample_fn=timed_sample_fn(clock))
                engine.stop_ids = engine.stop_ids + list(extra_stops)
                for _ in range(2):  # the first compiles
                    traces = sum(sampler_module.TRACE_COUNTS.values())
                    clock.reset()
                    start = time.perf_counter()
                    with mock.patch.object(continuous_module, "SlotCache", timed_slots(clock)):
                        out = engine.rollout(tasks, group_size=args.group_size,
                                             seat_params=[model.params, model.params],
                                             seed=args.seed)
                    wall = time.perf_counter() - start
                st = out.stats
                busy = max(st["time_generate_s"], st["time_judge_busy_s"])
                by[label, scheduler] = len(out.dialogues) / wall
                turn_rate = st["decode_tokens"] / st["time_generate_s"]
                row = [label, scheduler, f"{wall:.1f}", f"{by[label, scheduler]:.3f}",
                       f"{100 * st['decode_tokens'] / st['decode_slot_steps']:.0f}%",
                       f"{100 * st['time_agreement_s'] / wall:.0f}%",
                       f"{st['time_generate_s']:.1f}", f"{st['time_judge_busy_s']:.1f}",
                       f"{wall / busy:.2f}", f"{out.rounds.mean():.1f}",
                       f"{out.agreed.mean():.2f}", st["decode_tokens"],
                       st["prompt_tokens_reused"], turn_rate,
                       f"{clock.total('prefill'):.1f}", f"{clock.total('decode'):.1f}",
                       sum(k == "decode" for k, *_ in clock.events),
                       sum(sampler_module.TRACE_COUNTS.values()) - traces]
                if bandwidth:
                    # The best a decode step could do: every dialogue in one batch, each at its
                    # mean context (prompt and half a turn).
                    context = np.mean([len(q.tokens) for q in out.sequences]) - (
                        st["decode_tokens"] / max(len(out.sequences), 1)) / 2
                    bytes_pp = 2 if args.dtype == "bfloat16" else 4
                    roof = roofline_tokens_per_s(model.config, min(len(out.dialogues), args.slots),
                                                 context, bandwidth, bytes_pp)
                    row.append(f"{100 * turn_rate / roof:.1f}%")
                rows.append(row)
    finally:
        stop_server(server)
    headers = ["case", "scheduler", "wall s", "dialogues/s", "slot utilisation", "judge wait",
               "decode busy s", "judge busy s", "wall / max(busy)", "mean turns", "agreed",
               "turn tokens", "prompt tokens reused", "turn tok/s", "prefill s", "decode s",
               "decode calls", "traces (warm run)"]
    body = table(headers + (["% HBM roofline"] if bandwidth else []), rows)
    ratios = ", ".join(f"{label}: {by[label, 'continuous'] / by[label, 'lockstep']:.2f}x"
                       for _, label, *_ in scenarios)
    body += (f"\n\ncontinuous / lockstep dialogues/s: {ratios}.\n\n{len(tasks)} prompts x "
             f"G={args.group_size}, configs/default.py's rollout (1 round of "
             f"{args.max_new_tokens}-token turns, context_turns=2, threshold 0.3, final solution "
             f"{args.final_max_new_tokens}); continuous: decode_slots={args.slots}, "
             f"decode_chunk={args.chunk}, prefix_cache_rows={args.prefix_rows}, "
             f"judge_workers={args.judge_workers} for the HTTP judge (HttpJudge concurrency 8, "
             f"the test server's varied answers). Turn tok/s: turn tokens over decode busy time "
             f"(prefill and decode). Prefill s / decode s: the sampler's prefill and decode "
             f"calls, synchronised (lockstep: Session.extend and generate, the final solutions "
             f"included; continuous: SlotCache.insert and decode, the final solutions under "
             f"prefill and decode as lockstep's).")
    if bandwidth:
        body += (f" Roofline: weights and KV cache read once per decode step over the measured "
                 f"copy bandwidth, {bandwidth:,.0f} GB/s, at batch min(dialogues, slots).")
    return body


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--turns", type=int, default=3, help="0 skips the throughput part")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--final-max-new-tokens", type=int, default=96)
    ap.add_argument("--context-turns", type=int, default=2, help="0 = full history (Session)")
    ap.add_argument("--agreement", default="judge", choices=["judge", "marker"])
    ap.add_argument("--scaling-turns", type=int, default=6, help="0 skips the scaling part")
    ap.add_argument("--scaling-tokens", type=int, default=32)
    ap.add_argument("--scaling-group", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--schedulers", action="store_true", help="part 3: lockstep vs continuous")
    ap.add_argument("--slots", type=int, default=NegotiationConfig.decode_slots)
    ap.add_argument("--chunk", type=int, default=NegotiationConfig.decode_chunk)
    ap.add_argument("--judge-workers", type=int, default=4)
    ap.add_argument("--prefix-rows", type=int, default=NegotiationConfig.prefix_cache_rows)
    ap.add_argument("--cases", nargs="+", choices=SCHEDULER_CASES, default=list(SCHEDULER_CASES),
                    help="part 3's cases")
    ap.add_argument("--random-init", action="store_true",
                    help="a preset's shape with random weights, and --tokenizer's vocabulary")
    ap.add_argument("--tokenizer", default="default",
                    help="with --random-init: the tokenizer and chat template (a model directory)")
    ap.add_argument("--roofline", action="store_true", help="part 3: %% of the HBM roofline")
    args = ap.parse_args()

    if args.random_init:
        words = resolve_model_dir(args.tokenizer)
        model = negojax.load_model(args.model, dtype=args.dtype, param_dtype=args.dtype,
                                   random_init=True, tokenizer=words,
                                   overrides={"vocab_size": load_tokenizer(words).vocab_size})
    else:
        model = negojax.load_model(args.model, dtype=args.dtype)
    tasks = load_tasks("train")[:args.prompts]
    if args.turns:
        load = os.getloadavg()[0]
        body = throughput(args, model, tasks, model)
        record(f"Rollout: {args.model} {args.dtype}, {args.prompts}x{args.group_size} dialogues",
               body + f"\n\nload average at start: {load:.1f}")
    if args.scaling_turns:
        load = os.getloadavg()[0]
        record(f"Rollout cost vs turns: {args.model}, continuation vs re-encoding",
               scaling(args, model, tasks) + f"\n\nload average at start: {load:.1f}")
    if args.schedulers:
        load = os.getloadavg()[0]
        record(f"Rollout schedulers: {args.model}, lockstep vs continuous",
               schedulers(args, model, tasks) + f"\n\nload average at start: {load:.1f}")


if __name__ == "__main__":
    main()
