"""One real 2-agent negotiation with the embedded SmolLM2-135M-Instruct, on CPU, end to end:
dialogue, final solution, transcripts.jsonl and the HTML page."""
import html
import json
import os

import negojax
from negojax.data import load_tasks
from negojax import jsonl
from negojax.negotiation import NegotiationConfig, NegotiationEngine, view


def test_real_dialogue_transcript_and_page(tmp_path):
    model = negojax.load_model("default")
    task = next(t for t in load_tasks("eval") if len(t.personas) == 2)
    cfg = NegotiationConfig(max_turns=2, max_new_tokens=40, final_max_new_tokens=48,
                            agreement="marker")
    out = NegotiationEngine(cfg, model.config, model.tokenizer).rollout(
        [task], group_size=1, seat_params=[model.params, model.params], seed=0, mode="eval")
    d = out.dialogues[0]
    assert 1 <= len(d["turns"]) <= 2 and out.rounds[0, 0] == len(d["turns"])
    assert [t["speaker"] for t in d["turns"]] == [0, 1][:len(d["turns"])]
    assert all(t["text"] and 0 < t["num_tokens"] <= 40 for t in d["turns"])
    assert d["final_solution"]  # eval mode: written with or without agreement
    assert out.sequences and all(s.seat == 0 for s in out.sequences)

    records = [dict(r, step=0, reward=1.5, reward_components={"ca_score": 1.5})
               for r in out.dialogues]
    jsonl.Writer(os.path.join(tmp_path, "transcripts.jsonl")).write(records)
    assert view.main([str(tmp_path)]) == 0
    with open(os.path.join(tmp_path, "transcripts.jsonl")) as f:
        assert json.loads(f.readline())["scenario_id"] == task.id
    page = (tmp_path / "transcripts.html").read_text()
    for text in [task.id, d["final_solution"], *d["personas"], *(t["text"] for t in d["turns"])]:
        assert html.escape(text) in page
