"""Sample efficiency of the two credits: welfare, agreement and the share of samples in groups
without signal per GRPO step (32 dialogues a step, so the x axis is also samples / 32), one line
per arm.

  python experiments/credit_resource_split/curves.py
"""
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = pathlib.Path(__file__).parent
ARMS = {"dialogue": "tab:blue", "turn": "tab:green"}
PANELS = (("welfare", "sum welfare (0 without a deal)"), ("agreement", "agreement rate"),
          ("zero_advantage_fraction", "samples in groups without signal"))


def main() -> None:
    fig, axes = plt.subplots(1, len(PANELS), figsize=(12, 3.4))
    for arm, color in ARMS.items():
        rows = [json.loads(line)
                for line in (HERE / arm / "metrics.jsonl").read_text().splitlines()]
        steps = [r["step"] for r in rows]
        for ax, (key, title) in zip(axes, PANELS):
            ax.plot(steps, [r[key] for r in rows], color=color, marker="o", markersize=3,
                    label=f"rl.credit={arm}")
            ax.set_title(title)
            ax.set_xlabel("GRPO step")
            ax.set_ylim(0, 1)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(HERE / "curves.png", dpi=120)
    print(HERE / "curves.png")


if __name__ == "__main__":
    main()
