"""What each seat reads: persona system prompts, the per-turn context and the final-solution prompt.

A seat's view of the dialogue is a chat: its persona as the system message, the dilemma as the
first user message, then dialogue messages: the other agents' messages as `user` messages
prefixed with the speaker's name ("Name: text"), its own earlier messages as `assistant`
messages holding exactly what it wrote (no name, so the model is never shown a prefix it did not
produce). Consecutive messages of one role are joined into one (the dilemma and the opening
message a later speaker reads, or several other parties' messages in a row), because templates
such as Gemma's refuse roles that do not alternate. The chat template of the tokenizer renders
the chat.
"""
from __future__ import annotations

from typing import Optional, Sequence

from negojax.data import Persona


def _present(labelled: Sequence[tuple[str, str]], template: str) -> str:
    """`template` filled with each (label, value) whose value is not empty: a user's persona may
    leave wants, fears or style out, and an empty "Wants:" line would read as wanting nothing."""
    return "".join(template.format(label, value) for label, value in labelled if value)


def _persona_lines(persona: Persona) -> str:
    return f"{persona.name}\n- Core value: {persona.core_value}" + _present(
        [("Wants", persona.wants), ("Fears", persona.fears), ("Negotiation style", persona.style)],
        "\n- {}: {}")


def system_prompt(persona: Persona, others: Sequence[Persona], marker: Optional[str]) -> str:
    """The persona a seat plays, who it negotiates with, and how to conduct itself. `marker` is
    the agreement marker in marker mode, None when a judge decides agreement."""
    names = ", ".join(p.name for p in others)
    text = (f"You are {persona.name}, one party in a negotiation with {names}.\n"
            f"Your core value: {persona.core_value}\n"
            + _present([("What you want", persona.wants), ("What you fear", persona.fears),
                        ("Your negotiation style", persona.style)], "{}: {}\n")
            + "\n"
            "Speak for your core value, but aim for a solution that serves the core needs of "
            "everyone at the table, not a win for one side: listen to the others' concerns, "
            "propose concrete options and build on good ideas. Write one short message (a few "
            "sentences) in your own voice; do not write the other parties' lines.")
    if marker:
        text += (f"\n\nIf you fully agree with the other side's latest proposal, end your "
                 f"message with {marker}. Write {marker} only then, never while anything you "
                 "need is still open.")
    return text


def dilemma_message(dilemma: str) -> str:
    return (f"The situation under negotiation:\n{dilemma}\n\n"
            "Negotiate toward a solution everyone can accept. If nobody has spoken yet, open by "
            "stating what matters to you and proposing a solution; otherwise reply to the "
            "latest messages.")


def seat_messages(system: str, opening: str, turns: Sequence[tuple[int, str, str]],
                  seat: int) -> list[dict]:
    """The chat a seat sees. `opening` is the first user message (the environment's, by default
    `dilemma_message`); `turns` are (speaker seat, speaker name, text) in dialogue order, already
    cut to the context window."""
    messages = [{"role": "system", "content": system},
                {"role": "user", "content": opening}]
    for speaker, name, text in turns:
        role, content = ("assistant", text) if speaker == seat else ("user", f"{name}: {text}")
        if messages[-1]["role"] == role:
            messages[-1] = {"role": role, "content": f"{messages[-1]['content']}\n\n{content}"}
        else:
            messages.append({"role": role, "content": content})
    return messages


def final_solution_messages(dilemma: str, personas: Sequence[Persona],
                            turns: Sequence[tuple[str, str]], agreed: bool) -> list[dict]:
    """Agent 1 (personas[0]) writes the solution from the dilemma, every persona and the whole
    dialogue (`turns`: (speaker name, text)). Without agreement (evaluation only) it writes the
    best solution the dialogue points to."""
    parties = "\n\n".join(_persona_lines(p) for p in personas)
    dialogue = "\n\n".join(f"{name}: {text}" for name, text in turns) or "(no messages)"
    outcome = ("The parties reached agreement. Write the final solution they agreed on"
               if agreed else
               "The parties did not fully agree. Write the solution that best serves every "
               "party's core needs, building on what they said")
    user = (f"The situation:\n{dilemma}\n\nThe parties:\n{parties}\n\nThe negotiation:\n"
            f"{dialogue}\n\n{outcome}: a concrete plan (what happens, who does what) and, in one "
            "sentence per party, how it serves that party's core value. Be concise.")
    system = (f"You are {personas[0].name}. The negotiation is over; you now write its outcome "
              "fairly, for every party, not only for yourself.")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def single_agent_messages(dilemma: str, personas: Sequence[Persona]) -> list[dict]:
    """The single-agent baseline's one prompt: the dilemma and every persona's view, answered
    by one model with no dialogue. It asks for what the negotiation's final solution gives (a
    concrete plan and how it serves each party), so the judge scores both alike."""
    parties = "\n\n".join(_persona_lines(p) for p in personas)
    user = (f"The situation:\n{dilemma}\n\nThe parties:\n{parties}\n\nWrite the solution that "
            "best serves every party's core needs: a concrete plan (what happens, who does "
            "what) and, in one sentence per party, how it serves that party's core value. Be "
            "concise.")
    system = ("You advise on situations where several parties' values conflict. You hear every "
              "party's view and write one solution fairly, for all of them.")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
