"""DialogueState bookkeeping that agreement checks read."""
import numpy as np

from negojax.data import load_tasks
from negojax.negotiation.records import DialogueState, Turn


def _turn(speaker, text):
    return Turn(speaker=speaker, text=text, tokens=[1, 2], policy_logp=np.zeros(2),
                hit_token_cap=False)


def test_latest_turns_after_several_rounds_in_dialogue_order():
    task = next(t for t in load_tasks("train") if len(t.personas) == 2)
    state = DialogueState(task, prompt_index=0, group_index=0, first_speaker=0)
    assert state.latest_turns() is None
    for i, speaker in enumerate([0, 1, 0, 1, 0]):
        state.turns.append(_turn(speaker, f"turn {i}"))
    assert [t.text for t in state.latest_turns()] == ["turn 3", "turn 4"]
