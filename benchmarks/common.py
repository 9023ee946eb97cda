"""Shared by the benchmarks: machine facts, a timing helper, the HBM roofline, and appending to
BENCHMARKS.md."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import time

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def machine() -> str:
    devices = jax.devices()
    kind = devices[0].device_kind if devices else "?"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return (f"{len(devices)}x {kind} ({jax.default_backend()}); host {cpu}, {os.cpu_count()} "
            f"cores; python {platform.python_version()}, jax {jax.__version__}")


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def table(headers: list[str], rows: list[list]) -> str:
    fmt = lambda v: f"{v:,.1f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def record(title: str, body: str, *, path: str | None = None) -> None:
    """Print a result block and append it to BENCHMARKS.md with date, machine and command."""
    command = "python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "?"
    block = (f"\n### {title}\n\n- date: {datetime.date.today()}  commit: {commit}\n"
             f"- machine: {machine()}\n- command: `{command}`\n\n{body}\n")
    print(block)
    with open(path or os.path.join(ROOT, "BENCHMARKS.md"), "a", encoding="utf-8") as f:
        f.write(block)


def roofline_tokens_per_s(config, batch, context, bandwidth_gbs, bytes_per_param):
    """Decode is memory bound: every step reads all weights plus every row's KV cache."""
    weights = config.num_params * bytes_per_param
    kv = 2 * config.num_layers * config.num_kv_heads * config.head_dim * bytes_per_param
    step_bytes = weights + batch * context * kv
    return batch * bandwidth_gbs * 1e9 / step_bytes


def measure_bandwidth_gbs() -> float:
    """Device memory bandwidth from a large on-device copy (read + write)."""
    x = jax.numpy.ones((256 * 1024 * 1024,), jax.numpy.float32)  # 1 GiB
    copy = jax.jit(lambda a: a * 1.0)
    copy(x).block_until_ready()
    _, seconds = timed(lambda: [copy(x).block_until_ready() for _ in range(10)])
    return 10 * 2 * x.nbytes / seconds / 1e9
