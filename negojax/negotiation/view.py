"""`python -m negojax.negotiation.view RUN_DIR`: transcripts.jsonl -> transcripts.html in RUN_DIR.

A static page (no scripts, every transcript string escaped): dialogues grouped by training step,
each with its personas, turns coloured by speaker, the agreement turn, the final solution and
the reward with its components.
"""
from __future__ import annotations

import argparse
import collections
import html
import sys

from negojax import storage
from negojax.jsonl import Records

TRANSCRIPTS_FILE = "transcripts.jsonl"
HTML_FILE = "transcripts.html"
_COLOURS = ("#e3f2fd", "#fff3e0", "#e8f5e9", "#f3e5f5", "#fce4ec", "#e0f7fa")
_PAGE_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; color: #222; }
"""
# The dialogue's own rules: the evaluation report embeds dialogues too (`dialogue_html`).
DIALOGUE_STYLE = """
details.dialogue { border: 1px solid #ccc; border-radius: 6px; margin: .6rem 0;
                   padding: .4rem .8rem; }
summary { cursor: pointer; }
.turn { border-radius: 6px; padding: .4rem .7rem; margin: .35rem 0; white-space: pre-wrap; }
.who { font-weight: 600; }
.meta { color: #555; font-size: .9em; }
.final { border-left: 4px solid #555; padding: .4rem .7rem; white-space: pre-wrap;
         background: #fafafa; }
.agree { color: #1b5e20; font-weight: 600; } .noagree { color: #b71c1c; font-weight: 600; }
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3g}" if isinstance(value, float) else _e(value)


def dialogue_html(rec: dict, *, open_: bool = False) -> str:
    """One transcript record as a <details> block (expanded with `open_`); every string escaped."""
    personas = rec.get("personas") or []
    agreed = rec.get("agreed")
    single = rec.get("setting") == "single_agent"  # its one turn is the answer, and the solution
    outcome = ('<span class="agree">single-agent answer</span>' if single else
               f'<span class="agree">agreed at turn {_e(rec.get("agreement_turn"))}</span>'
               if agreed else '<span class="noagree">no agreement</span>')
    reward = rec.get("reward")
    summary = (f'{_e(rec.get("scenario_id"))} &middot; {_e(" vs ".join(personas))} &middot; '
               f'{outcome} &middot; reward {_number(reward)}')
    parts = [f'<details class="dialogue"{" open" if open_ else ""}><summary>{summary}</summary>',
             f'<p class="meta">tier {_e(rec.get("tier"))} &middot; group {_e(rec.get("group"))}'
             f' &middot; prompt {_e(rec.get("prompt_index"))}, sample '
             f'{_e(rec.get("group_index"))}</p>',
             f'<p><b>Dilemma.</b> {_e(rec.get("dilemma"))}</p>']
    components = rec.get("reward_components") or {}
    if components:
        parts.append('<p class="meta">' + ", ".join(
            f"{_e(k)} = {_number(v)}" for k, v in sorted(components.items())) + "</p>")
    for k, turn in enumerate(rec.get("turns") or [], start=1):
        speaker = turn.get("speaker", 0)
        colour = _COLOURS[speaker % len(_COLOURS)] if isinstance(speaker, int) else "#eee"
        cap = " (hit token cap)" if turn.get("hit_token_cap") else ""
        credit = (f" &middot; advantage {turn['advantage']:+.2f}"
                  if turn.get("advantage") is not None else "")
        parts.append(f'<div class="turn" style="background:{colour}"><span class="who">'
                     f'{k}. {_e(turn.get("persona"))}</span> <span class="meta">'
                     f'{_e(turn.get("num_tokens"))} tokens{cap}{credit}</span>\n'
                     f'{_e(turn.get("text"))}</div>')
    if rec.get("final_solution") is not None and not single:
        parts.append(f'<p><b>Final solution</b> ({_e(personas[0] if personas else "Agent 1")})'
                     f'</p><div class="final">{_e(rec["final_solution"])}</div>')
    parts.append("</details>")
    return "\n".join(parts)


def render_page(records: list[dict], title: str) -> str:
    by_step = collections.defaultdict(list)
    for rec in records:
        by_step[rec.get("step")].append(rec)
    body = [f"<h1>{_e(title)}</h1>",
            f'<p class="meta">{len(records)} dialogues in {len(by_step)} step(s)</p>']
    for step in sorted(by_step, key=lambda s: (s is None, s if isinstance(s, (int, float)) else 0)):
        recs = by_step[step]
        agreed = sum(bool(r.get("agreed")) for r in recs)
        rewards = [r["reward"] for r in recs if isinstance(r.get("reward"), (int, float))]
        mean = f"{sum(rewards) / len(rewards):.3g}" if rewards else "n/a"
        body.append(f'<h2>Step {_e("?" if step is None else step)}</h2><p class="meta">'
                    f'{len(recs)} dialogues, {agreed} agreed, mean reward {mean}</p>')
        body += [dialogue_html(r) for r in recs]
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>"
            f"{_e(title)}</title><style>{_PAGE_STYLE}{DIALOGUE_STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_html(run_dir: str) -> str:
    """Render RUN_DIR/transcripts.jsonl into RUN_DIR/transcripts.html; returns the page's path."""
    source = storage.join(run_dir, TRANSCRIPTS_FILE)
    if not storage.isfile(source):
        raise FileNotFoundError(f"{source}: no transcripts; point RUN_DIR at a run directory "
                                "that has a transcripts.jsonl")
    page = render_page(list(Records(source)), f"Transcripts: {run_dir}")
    out = storage.join(run_dir, HTML_FILE)
    storage.write_text(out, page)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m negojax.negotiation.view",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    args = parser.parse_args(argv)
    try:
        print(write_html(args.run_dir))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
