"""The continuous scheduler's primitives against lockstep's on the same rows: prefill
(SlotCache.insert against sampler.prefill) and the decode step (SlotCache.decode in chunks
against one Session.generate), for 8 prompts of ~400 tokens and 48 new tokens at T=0.7,
top-p 0.95, with turns that run to the budget and turns that stop early (a 16th of the
vocabulary ends a turn). Each pair runs twice; the second (warm) run is reported.

Whether continuous can beat lockstep on a device turns on these: a scheduler only moves work
between steps, so with the primitives at parity what remains is how many steps it decodes and
how many rows each step carries.

  python benchmarks/slots.py
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import negojax  # noqa: E402
from common import record, table  # noqa: E402
from negojax.sampling import SamplingParams  # noqa: E402
from negojax.sampling.sampler import prefill  # noqa: E402
from negojax.sampling.slots import SlotCache  # noqa: E402
from negojax.shapes import bucket  # noqa: E402

LOCKSTEP, CONTINUOUS = "lockstep (Session)", "continuous (SlotCache)"


def lockstep(model, prompts, new, sampling, stops):
    """(prefill s, decode s, tokens, steps) of one prefill and one generate call."""
    start = time.perf_counter()
    session = prefill(model.params, model.config, prompts, extra_slots=bucket(new, 8))
    jax.block_until_ready(session.logits)
    filled = time.perf_counter()
    out = session.generate(new, sampling, stop_ids=stops, seed=1)  # host lists: synchronised
    return (filled - start, time.perf_counter() - filled, sum(map(len, out.tokens)),
            max(map(len, out.tokens)))


def slots(model, prompts, new, sampling, stops, chunk):
    """(prefill s, decode s, tokens, steps) of one insert and decode calls until all end."""
    pool = SlotCache(model.params, model.config, len(prompts))
    start = time.perf_counter()
    pool.insert(list(range(len(prompts))), prompts,
                [np.array([1, i], np.uint32) for i in range(len(prompts))], new)
    jax.block_until_ready(pool.cache)
    filled = time.perf_counter()
    tokens = steps = 0
    while pool.busy:
        out = pool.decode(chunk, sampling, stop_ids=stops)
        tokens += sum(map(len, out.tokens.values()))
        steps += out.steps
    return filled - start, time.perf_counter() - filled, tokens, steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--prompt-tokens", type=int, default=380)
    ap.add_argument("--new", type=int, default=48)
    ap.add_argument("--chunk", type=int, default=16)
    args = ap.parse_args()
    model = negojax.load_model(args.model)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(100, model.config.vocab_size, args.prompt_tokens + 7 * i).tolist()
               for i in range(args.rows)]
    sampling = SamplingParams(0.7, 0.95)
    cases = [("to the budget", []),
             ("early stops", list(range(0, model.config.vocab_size, 16)))]
    load = os.getloadavg()[0]
    rows, per_step = [], {}
    for label, stops in cases:
        for name, run in ((LOCKSTEP, lambda: lockstep(model, prompts, args.new, sampling,
                                                       stops)),
                          (CONTINUOUS, lambda: slots(model, prompts, args.new, sampling, stops,
                                                     args.chunk))):
            run()  # compiles
            filled, decoded, tokens, steps = run()
            per_step[label, name] = decoded / steps
            rows.append([label, name, f"{filled:.2f}", f"{decoded:.2f}", tokens, steps,
                         f"{1000 * decoded / steps:.0f}"])
    body = table(["turns", "primitive", "prefill s", "decode s", "tokens", "decode steps",
                  "ms / step"], rows)
    ratios = ", ".join(
        f"{label}: {per_step[label, CONTINUOUS] / per_step[label, LOCKSTEP]:.2f}x"
        for label, _ in cases)
    body += (f"\n\nSlotCache / Session time per decode step: {ratios}.\n\n{args.rows} random "
             f"prompts of {args.prompt_tokens}-{args.prompt_tokens + 7 * (args.rows - 1)} tokens, "
             f"{args.new} new tokens, T=0.7 top-p 0.95, decode_chunk={args.chunk}; the second of "
             f"two runs. Early stops: a 16th of the vocabulary ends a turn. (Random prompts share "
             f"no opening, so neither prefill has a stem to reuse.)\n\nload average at start: "
             f"{load:.1f}")
    record(f"Decode slots against a Session: {args.model}, {args.rows} rows", body)


if __name__ == "__main__":
    main()
