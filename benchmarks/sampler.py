"""New tokens per second of the negojax sampler beside transformers' generate, same run.

Both decode greedily with stop tokens disabled, so every row produces exactly --new tokens
from the same chat-formatted prompts (different lengths, batched). JAX compile time is
measured on a warm-up call and reported apart from the steady-state rate.

  python benchmarks/sampler.py                      # embedded SmolLM2, batches 1 8 32
  python benchmarks/sampler.py --model llama3.2-1b --random-init --dtype bfloat16 \
      --batches 1 16 64 --roofline                   # the GPU shape (benchmarks/device_sampler.sh)
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

import negojax  # noqa: E402
from common import measure_bandwidth_gbs, record, roofline_tokens_per_s, table, timed  # noqa: E402
from negojax.sampling import sample  # noqa: E402

TOPICS = ["a shared garden", "a school budget", "a night shift rota", "a family holiday",
          "a river clean-up", "a startup's pricing", "a library's hours", "a football club"]


def prompts_for(batch: int, tokenizer, vocab: int, rng) -> list[list[int]]:
    if tokenizer is None:  # random weights: random ids of varied length
        return [rng.integers(3, vocab, 24 + 7 * (i % 8)).tolist() for i in range(batch)]
    out = []
    for i in range(batch):
        text = (f"Two people disagree about {TOPICS[i % len(TOPICS)]}. " * (1 + i % 3)
                + "Propose a fair compromise.")
        out.append(tokenizer.apply_chat_template([{"role": "user", "content": text}]))
    return out


def hf_model_for(model, dtype):
    if model.source_dir is not None:
        return transformers.AutoModelForCausalLM.from_pretrained(model.source_dir,
                                                                 torch_dtype=dtype)
    hf_cfg = transformers.AutoConfig.for_model(**model.config.to_hf_dict())
    return transformers.AutoModelForCausalLM.from_config(hf_cfg, torch_dtype=dtype)


def hf_generate(hf, prompts, new_tokens, device):
    width = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):  # left padding, as HF decoder-only generation expects
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    with torch.no_grad():
        out = hf.generate(ids.to(device), attention_mask=mask.to(device),
                          max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                          eos_token_id=None, pad_token_id=0)
    if device != "cpu":
        torch.cuda.synchronize()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--random-init", action="store_true")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--new", type=int, default=64, help="new tokens per row")
    ap.add_argument("--roofline", action="store_true", help="report %% of HBM roofline")
    ap.add_argument("--no-hf", action="store_true")
    args = ap.parse_args()

    model = negojax.load_model(args.model, dtype=args.dtype, param_dtype=args.dtype,
                               random_init=args.random_init)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    hf = None if args.no_hf else hf_model_for(model, torch_dtype).to(device).eval()
    bandwidth = measure_bandwidth_gbs() if args.roofline else None
    rng = np.random.default_rng(0)
    rows = []
    for batch in args.batches:
        prompts = prompts_for(batch, model.tokenizer, model.config.vocab_size, rng)
        run = lambda: sample(model.params, model.config, prompts, max_new_tokens=args.new)
        _, compile_and_run = timed(run)
        out, seconds = timed(run)
        assert all(len(t) == args.new for t in out.tokens)
        ours = batch * args.new / seconds
        row = [batch, ours, compile_and_run - seconds]
        if hf is not None:
            hf_generate(hf, prompts[:1], 4, device)  # warm-up
            _, hf_seconds = timed(hf_generate, hf, prompts, args.new, device)
            theirs = batch * args.new / hf_seconds
            row += [theirs, ours / theirs]
        if bandwidth:
            context = max(len(p) for p in prompts) + args.new // 2
            bytes_pp = 2 if args.dtype == "bfloat16" else 4
            roof = roofline_tokens_per_s(model.config, batch, context, bandwidth, bytes_pp)
            row += [100.0 * ours / roof]
        rows.append(row)
    headers = ["batch", "negojax tok/s", "compile s"]
    if hf is not None:
        headers += ["HF generate tok/s", "ratio"]
    if bandwidth:
        headers += ["% HBM roofline"]
    body = table(headers, rows)
    if bandwidth:
        body += f"\n\nmeasured copy bandwidth: {bandwidth:,.0f} GB/s"
    record(f"Sampler: {args.model} {args.dtype}, {args.new} new tokens per row", body)


if __name__ == "__main__":
    main()
