"""Transcripts JSONL and the static HTML page: grouping by step, escaping, broken lines."""

import numpy as np

from negojax import jsonl
from negojax.negotiation import view


def record(step, scenario, text, agreed=True, reward=3.0):
    return {"scenario_id": scenario, "group": "g", "tier": "everyday", "dilemma": "Who cooks?",
            "personas": ["Budget Keeper", "Health <Guard>"],
            "turns": [{"speaker": 0, "persona": "Budget Keeper", "text": text, "num_tokens": 5,
                       "hit_token_cap": False, "advantage": -0.5},
                      {"speaker": 1, "persona": "Health <Guard>", "text": "Fine [AGREE]",
                       "num_tokens": 4, "hit_token_cap": True}],
            "agreed": agreed, "agreement_turn": 2 if agreed else None,
            "final_solution": "Cook & share" if agreed else None, "prompt_index": 0,
            "group_index": 0, "step": step, "reward": reward,
            "reward_components": {"ca_score": np.float64(reward), "failed": float("nan")}}


def test_page_groups_steps_and_escapes(tmp_path):
    path = tmp_path / "transcripts.jsonl"
    assert jsonl.Writer(str(path)).write([record(0, "s-1", "<script>alert(1)</script>")]) == 1
    jsonl.Writer(str(path)).write([record(1, "s-2", "ok", agreed=False, reward=0.0)])
    rows = list(jsonl.Records(str(path)))
    assert [r["step"] for r in rows] == [0, 1]
    assert rows[0]["reward_components"] == {"ca_score": 3.0, "failed": None}  # NaN -> null
    out = view.write_html(str(tmp_path))
    page = open(out).read()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Health &lt;Guard&gt;" in page and "Cook &amp; share" in page
    assert page.index("Step 0") < page.index("s-1") < page.index("Step 1") < page.index("s-2")
    assert "agreed at turn 2" in page and "no agreement" in page and "hit token cap" in page
    assert page.count("advantage -0.50") == 2  # the trained turn's credit, once per record


def test_missing_run_dir_is_one_line_error(tmp_path, capsys):
    assert view.main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "transcripts.jsonl" in err
