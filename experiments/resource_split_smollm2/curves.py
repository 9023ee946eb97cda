"""The training curves of the committed runs: agreement rate and welfare per GRPO step, one line
per seed (a 5-step moving mean over the step's 32 dialogues), with the held-out greedy evaluation
of the base and the trained model at either end.

  python experiments/resource_split_smollm2/curves.py
"""
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = pathlib.Path(__file__).parent
SEEDS = sorted(p for p in HERE.glob("seed*") if (p / "metrics.jsonl").is_file())
WINDOW = 5


def rows(run: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def moving_mean(values: np.ndarray) -> np.ndarray:
    return np.asarray([values[max(0, i - WINDOW + 1):i + 1].mean() for i in range(len(values))])


def main() -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in zip(axes, ("agreement", "welfare"),
                              ("agreement rate", "sum welfare (0 without a deal)")):
        for run, color in zip(SEEDS, ("tab:blue", "tab:orange")):
            steps = np.asarray([r["step"] for r in rows(run)])
            values = np.asarray([r[key] for r in rows(run)], float)
            ax.plot(steps, values, color=color, alpha=0.25)
            ax.plot(steps, moving_mean(values), color=color, label=f"{run.name}: training")
            results = json.loads((run / "eval_results.json").read_text())
            outcomes = results["environment"]["outcomes"]
            for name, x, marker in (("B", 0, "o"), ("A", steps[-1], "s")):
                greedy = outcomes[name]["greedy"]
                low, high = greedy[f"{key}_ci"]
                ax.errorbar([x], [greedy[key]], yerr=[[greedy[key] - low], [high - greedy[key]]],
                            color=color, marker=marker, capsize=3,
                            label=f"{run.name}: held-out greedy, {'base' if name == 'B' else 'trained'}")
        ax.set_title(title)
        ax.set_xlabel("GRPO step")
        ax.set_ylim(0, 1)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(HERE / "curves.png", dpi=120)
    print(HERE / "curves.png")


if __name__ == "__main__":
    main()
