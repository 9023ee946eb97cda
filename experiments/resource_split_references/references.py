"""The reference policies on resource_split's held-out games, as `--config.mode=eval` reports
them beside the models (negojax.environments.reference_policies): the table a trained model is
read against. Writes references.json beside this file and prints the Markdown table.

  python experiments/resource_split_references/references.py [--welfare sum] [--games 200]
"""
import argparse
import json
import os

import numpy as np

from negojax.environments import ResourceSplit
from negojax.eval.metrics import interval

COLUMNS = ("welfare_sum", "welfare_nash", "utility_seat0", "utility_seat1", "one_sided",
           "pareto_optimal")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--welfare", default="sum", help="env.welfare: the best offer's aim")
    parser.add_argument("--games", type=int, default=200, help="eval.num_tasks")
    args = parser.parse_args()
    env = ResourceSplit(welfare_kind=args.welfare, parties=(2,))  # configs/resource_split.py's
    tasks = env.tasks("eval")[:args.games]
    out = {}
    for name, by_metric in env.reference_metrics(tasks).items():
        out[name] = {"n": len(tasks)}
        for metric, values in by_metric.items():
            finite = [v for v in values if np.isfinite(v)]
            out[name][metric] = float(np.mean(finite))
            out[name][f"{metric}_ci"] = list(interval(finite, rate=metric in env.rate_metrics))
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "references.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    print("| policy | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, row in out.items():
        cells = [f"{row[c]:.3f} [{row[c + '_ci'][0]:.3f}, {row[c + '_ci'][1]:.3f}]"
                 for c in COLUMNS]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
