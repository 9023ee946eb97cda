"""The rollout engine: P prompts x G dialogues between N seats, their prompts, their turns and
their training sequences.

The order in which the dialogues take their turns is the scheduler's (rollout.scheduler,
negojax.negotiation.schedulers): lockstep (the default) advances every running dialogue one
turn at a time, grouped into one batched sampler call per model, then one agreement check
covers every dialogue that spoke; continuous lets each dialogue advance on its own over decode
slots (docs/rollout.md). Either speaks through this engine's turn methods, and agreed
dialogues stop. Agent 1 (seat 0) then writes the final solutions in one more batched call. A
seat holding an ExternalSeat (a fixed model of its own, negojax.negotiation.external_seats)
answers its rows from their chats: text, no tokens, no Session, never trained.

Context. With `context_turns=k` every turn re-encodes its seat's chat: system prompt, dilemma
and the last k dialogue messages; each turn a trainable seat spoke is one TrainSequence. With
`context_turns=None` every dialogue is one row of a sampler `Session` per seat, so a seat's
whole history stays in the KV cache and a turn decodes only the speaking seat's rows. Before a
seat speaks, the chat template renders its whole conversation; the row's cache keeps the longest
prefix it shares with that rendering and is extended by the rest. Templates that extend their
earlier renderings (ChatML, Llama 3, Gemma) keep the sampled tokens in place, so a dialogue is
one TrainSequence per trained seat; templates that re-render history (Qwen3 drops past think
blocks) cut the row back before its earlier message, and the record up to then, sampled tokens
in the context they were sampled in, becomes a TrainSequence of its own. Either way the loss
covers exactly the tokens the seat sampled, once each, with the log-probs it sampled them under.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional, Sequence

import numpy as np

from negojax.data import Task
from negojax.models.config import ModelConfig
from negojax.negotiation import prompts
from negojax.negotiation.agreement import AgreementFn
from negojax.negotiation.config import NegotiationConfig, as_config
from negojax.negotiation.external_seats import ExternalSeat
from negojax.negotiation.records import (DialogueState, Rollout, SequenceBuilder, TrainSequence,
                                         Turn, message_text)
from negojax.negotiation.schedulers import SCHEDULERS
from negojax.negotiation.seats import policy_seat_lineups
from negojax.sampling import SamplingParams, Session, sample

MODES = ("train", "eval")


def derived_seed(seed: int, a: int, b: int) -> int:
    """An int32 seed derived from (seed, a, b), independent across distinct pairs: per (rollout
    seed, turn, sampler call of that turn) here, per (run seed, step, process) in training."""
    state = np.random.SeedSequence([seed, a, b]).generate_state(1, np.uint32)[0]
    return int(state >> 1)


def sampled_turn(tokenizer, seat: int, tokens, logp, finished, prompt=()) -> Turn:
    """A sampled message as a Turn, its text `message_text`'s."""
    finished = bool(finished)
    return Turn(seat, message_text(tokenizer, tokens, finished), list(tokens), np.asarray(logp),
                not finished, list(prompt))


class _SeatSession:
    """A Session of one seat; row i is that seat's view of dialogue i."""

    def __init__(self, session, num_dialogues: int):
        self.session = session
        self.rows = [_SessionRow() for _ in range(num_dialogues)]


class _SessionRow:
    """One seat's view of one dialogue inside a Session: the record of the tokens its cache
    holds (`sequence.tokens` are exactly those), which becomes its TrainSequences."""

    def __init__(self):
        self.sequence = SequenceBuilder()
        self.cut_off: list[SequenceBuilder] = []  # records whose tail the template re-rendered

    def rewind(self, keep: int) -> None:
        """Keep the first `keep` tokens. Sampled tokens past the cut stay trained in the record
        they were sampled in; the new record reads the kept prefix as context only, so no token
        is trained twice."""
        if self.sequence.generated_from(keep):
            self.cut_off.append(self.sequence)
            self.sequence = SequenceBuilder()
            self.sequence.context(self.cut_off[-1].tokens[:keep])
        else:
            self.sequence.truncate(keep)

    def records(self) -> list[SequenceBuilder]:
        return [r for r in self.cut_off + [self.sequence] if r.has_generated]


class NegotiationEngine:
    def __init__(self, config, model_config: ModelConfig, tokenizer, *, judge=None, rules=None,
                 environment=None, agreement_fn: Optional[AgreementFn] = None,
                 sample_fn: Callable = sample, session_cls: Callable = Session):
        """`environment` (a negojax.environments.Environment) gives the seats' prompts, the
        agreement check and the final-solution prompt; by default the paper's deliberation
        with the configured check (judge or marker). `agreement_fn` replaces the check with any
        callable `(states) -> bool array`; `sample_fn` / `session_cls` default to the
        sampler's."""
        self.config: NegotiationConfig = as_config(config)
        self.model_config = model_config
        self.tokenizer = tokenizer
        self.rules = rules
        if environment is None:
            from negojax.environments import Deliberation
            environment = Deliberation(agreement=self.config.agreement,
                                       marker=self.config.marker)
        self.environment = environment
        self.agreement_fn = agreement_fn or environment.agreement(self.config, judge)
        self.sample_fn = sample_fn
        self.session_cls = session_cls
        self.stop_ids = list(tokenizer.stop_ids)

    # ---------------------------------------------------------------- public
    def rollout_tasks(self, tasks: Sequence[Task], *, group_size: int, policy, opponent,
                      policy_seats: str = "first", seed: int, mode: str,
                      progress: Optional[Callable[[str], None]] = None) -> Rollout:
        """Rollouts for tasks with any number of personas: the policy takes and trains the
        seats `policy_seats` gives each dialogue (negojax.negotiation.seats.POLICY_SEATS) and
        `opponent` the others. Dialogues that seat the same params alike play together, one
        lineup at a time, merged back into task order. `progress(text)` hears each phase."""
        by_seats: dict[int, list[int]] = {}
        for i, task in enumerate(tasks):
            by_seats.setdefault(len(task.personas), []).append(i)
        G, P = group_size, len(tasks)
        dialogues, finals = [None] * (P * G), [None] * (P * G)
        agreed, rounds = np.zeros((P, G), bool), np.zeros((P, G), np.int32)
        sequences, stats = [], {}
        for seats, indices in sorted(by_seats.items()):
            label = f"{seats}-party " if len(by_seats) > 1 else ""
            lineups: dict[tuple, list] = {}  # params ids by seat -> (seat params, entries)
            for g, trained in enumerate(policy_seat_lineups(policy_seats, seats, G)):
                seat_params = [policy if s in trained else opponent for s in range(seats)]
                lineup = lineups.setdefault(tuple(map(id, seat_params)), (seat_params, []))
                lineup[1].extend((tasks[i], i, g, trained) for i in indices)
            for k, (seat_params, entries) in enumerate(lineups.values()):
                entries.sort(key=lambda e: (e[1], e[2]))  # task-major, as sampler rows always were
                self._check([tasks[i] for i in indices], G, seat_params, (), mode)
                part = self._play(entries, seat_params, seed=derived_seed(seed, seats, k),
                                  mode=mode,
                                  progress=progress and (lambda text: progress(label + text)))
                for (_, i, g, _), record, final, ok, n in zip(
                        entries, part.dialogues, part.final_solutions, part.agreed, part.rounds):
                    dialogues[i * G + g], finals[i * G + g] = record, final
                    agreed[i, g], rounds[i, g] = ok, n
                sequences += part.sequences
                for key, value in part.stats.items():
                    stats[key] = stats.get(key, 0) + value
        return Rollout(dialogues, sequences, agreed, rounds, finals, stats)

    def rollout(self, tasks: Sequence[Task], *, group_size: int, seat_params: Sequence,
                trainable_seats: Sequence[int] = (0,), seed: int, mode: str = "train",
                progress: Optional[Callable[[str], None]] = None) -> Rollout:
        """P tasks x G dialogues of one seat count, `seat_params[s]` in seat s and the seats
        `trainable_seats` trained. `progress(text)`, when given, hears each turn and the final
        solutions begin."""
        self._check(tasks, group_size, seat_params, trainable_seats, mode)
        trained = tuple(sorted(set(trainable_seats)))
        part = self._play([(task, p, g, trained) for p, task in enumerate(tasks)
                           for g in range(group_size)], seat_params, seed=seed, mode=mode,
                          progress=progress)
        P, G = len(tasks), group_size
        return dataclasses.replace(part, agreed=part.agreed.reshape(P, G),
                                   rounds=part.rounds.reshape(P, G))

    def _play(self, entries, seat_params: Sequence, *, seed: int, mode: str,
              progress: Optional[Callable[[str], None]]) -> Rollout:
        """The dialogues `entries` = [(task, prompt index, group index, trained seats)], one
        seat count, `seat_params[s]` in seat s; agreed and rounds come back flat, in entry
        order."""
        progress = progress or (lambda text: None)
        cfg = self.config
        num_seats = len(seat_params)
        if cfg.first_speaker == "random":
            firsts = np.random.default_rng(seed).integers(0, num_seats, len(entries))
        else:
            firsts = np.zeros(len(entries), int)
        states = [DialogueState(task, p, g, int(first), trained_seats=trained)
                  for (task, p, g, trained), first in zip(entries, firsts)]
        systems = [[self.environment.system_prompt(s.task, seat) for seat in range(num_seats)]
                   for s in states]
        stats = {"sampler_calls": 0, "generated_tokens": 0, "time_generate_s": 0.0,
                 "time_agreement_s": 0.0, "decode_slot_steps": 0, "decode_tokens": 0,
                 "time_judge_busy_s": 0.0, "prompt_tokens_reused": 0}
        sessions = (self._open_sessions(states, systems, seat_params)
                    if cfg.context_turns is None else None)
        limit = cfg.turn_limit(num_seats)
        SCHEDULERS.get(cfg.scheduler)(self, states, systems, seat_params, sessions, seed=seed,
                                      stats=stats, progress=progress)

        chats = [(s, self.environment.final_solution_messages(s)) for s in states
                 if s.agreed or mode == "eval"]
        writers = [(s, chat) for s, chat in chats if chat is not None]
        if writers:
            progress(f"final solutions ({len(writers)})")
            start = time.perf_counter()
            self._write_final_solutions(writers, seat_params[0],
                                        derived_seed(seed, limit, 0))
            stats["time_generate_s"] += time.perf_counter() - start
            stats["sampler_calls"] += 1
            stats["generated_tokens"] += sum(len(s.final.tokens) for s, _ in writers)

        return Rollout(
            dialogues=[s.record() for s in states],
            sequences=self._sequences(states, sessions),
            agreed=np.asarray([s.agreed for s in states], bool),
            rounds=np.asarray([len(s.turns) for s in states], np.int32),
            final_solutions=[None if s.final is None else s.final.text for s in states],
            stats=stats)

    # ---------------------------------------------------------------- checks
    def _check(self, tasks, group_size, seat_params, trainable_seats, mode):
        if mode not in MODES:
            raise ValueError(f"rollout mode={mode!r}: must be one of {MODES}")
        if not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size={group_size!r}: must be an integer >= 1")
        if not tasks:
            raise ValueError("rollout: no tasks given; pass at least one Task")
        n = len(seat_params)
        if n < 2:
            raise ValueError(f"seat_params has {n} seat(s); a negotiation needs one params "
                             "pytree per persona, at least 2")
        for task in tasks:
            if len(task.personas) != n:
                raise ValueError(f"task {task.id} has {len(task.personas)} personas but "
                                 f"seat_params has {n} seats; give one params pytree per persona "
                                 f"or draw tasks with {n} personas")
        bad = [s for s in trainable_seats if not 0 <= s < n]
        if bad:
            raise ValueError(f"trainable_seats {list(trainable_seats)}: seats {bad} do not exist; "
                             f"seats are 0..{n - 1}")

    # ---------------------------------------------------------------- turns
    def _turn(self, seat, tokens, logp, finished, prompt=()) -> Turn:
        return sampled_turn(self.tokenizer, seat, tokens, logp, finished, prompt)

    def _seat_chat(self, state: DialogueState, systems, seat: int, window: Optional[int]):
        turns = state.turns if window is None else state.turns[-window:]
        return prompts.seat_messages(systems[seat], self.environment.opening_message(state.task),
                                     [(t.speaker, state.name(t.speaker), t.text) for t in turns],
                                     seat)

    def windowed_prompt(self, state: DialogueState, systems, t: int) -> list[int]:
        """The prompt of turn t: its seat's chat over the last context_turns messages."""
        return self.tokenizer.apply_chat_template(
            self._seat_chat(state, systems, state.speaker(t), self.config.context_turns),
            add_generation_prompt=True)

    def speak_windowed(self, states, systems, rows, t, params, sampling, seed) -> list[Turn]:
        prompt_ids = [self.windowed_prompt(states[i], systems[i], t) for i in rows]
        out = self.sample_fn(params, self.model_config, prompt_ids,
                             max_new_tokens=self.config.max_new_tokens, sampling=sampling,
                             stop_ids=self.stop_ids, seed=seed, rules=self.rules)
        return [self._turn(states[i].speaker(t), out.tokens[k], out.policy_logp[k],
                           out.finished[k], prompt_ids[k]) for k, i in enumerate(rows)]

    def speak_external(self, states, systems, rows, t, seat, sampling, seed) -> list[Turn]:
        """An ExternalSeat answers from its chats (the configured window; None: the whole
        history): text and no tokens, so nothing of it is trained."""
        speakers = [states[i].speaker(t) for i in rows]
        chats = [self._seat_chat(states[i], systems[i], speaker, self.config.context_turns)
                 for i, speaker in zip(rows, speakers)]
        texts = seat.respond(chats, max_new_tokens=self.config.max_new_tokens,
                             sampling=sampling, seed=seed)
        return [_text_turn(speaker, text) for speaker, text in zip(speakers, texts)]

    def _open_sessions(self, states, systems, seat_params):
        """One Session per seat, a row per dialogue: a turn's decode runs only over the rows of
        the seat that speaks (one Session per model would also step the silent seats' rows);
        an ExternalSeat keeps its own context, so it has none.
        The cache is sized up front for the longest opening prompt plus the turn limit's full
        messages, so it does not grow (and recompile) turn after turn."""
        opening = max(len(self.tokenizer.apply_chat_template(
            self._seat_chat(s, systems[i], seat, None), True))
            for i, s in enumerate(states) for seat in range(s.num_seats))
        cfg = self.config
        turns = cfg.turn_limit(len(seat_params))
        min_cache = opening + turns * (cfg.max_new_tokens + _MESSAGE_OVERHEAD)
        sessions = []
        for seat, params in enumerate(seat_params):
            if isinstance(params, ExternalSeat):
                sessions.append(None)
                continue
            session = self.session_cls(params, self.model_config, len(states), rules=self.rules,
                                       min_cache=min_cache)
            sessions.append(_SeatSession(session, len(states)))
        return sessions

    def speak_in_session(self, states, systems, rows, t, session, sampling, seed) -> list[Turn]:
        deltas = [[] for _ in session.rows]
        keep: list[Optional[int]] = [None] * len(session.rows)
        active = np.zeros(len(session.rows), bool)
        speakers = []
        for i in rows:
            seat = states[i].speaker(t)
            row = session.rows[i]
            target = self.tokenizer.apply_chat_template(
                self._seat_chat(states[i], systems[i], seat, None), add_generation_prompt=True)
            # At least the last prompt token is re-extended: it yields the next-token logits.
            shared = min(_common_prefix(row.sequence.tokens, target), len(target) - 1)
            if shared < len(row.sequence.tokens):
                keep[i] = shared
                row.rewind(shared)
            deltas[i] = target[shared:]
            row.sequence.context(deltas[i])
            active[i] = True
            speakers.append((i, seat))
        if any(k is not None for k in keep):
            session.session.rewind(keep)
        session.session.extend(deltas)
        out = session.session.generate(self.config.max_new_tokens, sampling,
                                       stop_ids=self.stop_ids, seed=seed, rows=active)
        turns = []
        for i, seat in speakers:
            session.rows[i].sequence.generated(out.tokens[i], out.policy_logp[i], seat, t)
            turns.append(self._turn(seat, out.tokens[i], out.policy_logp[i], out.finished[i]))
        return turns

    # ---------------------------------------------------------------- final solution
    def _write_final_solutions(self, writers, params, seed):
        """Seat 0 writes each (state, chat) of `writers`' final solution from its chat."""
        cfg = self.config
        sampling = SamplingParams(cfg.final_temperature, cfg.final_top_p)
        if isinstance(params, ExternalSeat):  # seat 0 is the opponent's (policy_seats rotate)
            texts = params.respond([chat for _, chat in writers],
                                   max_new_tokens=cfg.final_max_new_tokens, sampling=sampling,
                                   seed=seed)
            for (s, _), text in zip(writers, texts):
                s.final = _text_turn(0, text)
            return
        prompt_ids = [self.tokenizer.apply_chat_template(chat, True) for _, chat in writers]
        out = self.sample_fn(params, self.model_config, prompt_ids,
                             max_new_tokens=cfg.final_max_new_tokens, sampling=sampling,
                             stop_ids=self.stop_ids, seed=seed, rules=self.rules)
        for k, (s, _) in enumerate(writers):
            s.final = self._turn(0, out.tokens[k], out.policy_logp[k], out.finished[k],
                                 prompt_ids[k])

    # ---------------------------------------------------------------- bookkeeping
    def _sequences(self, states, sessions) -> list[TrainSequence]:
        out = []
        for i, s in enumerate(states):
            for seat in s.trained_seats:
                if sessions is None:
                    for t, turn in enumerate(s.turns):
                        if turn.speaker == seat:
                            seq = SequenceBuilder()
                            seq.context(turn.prompt)
                            seq.generated(turn.tokens, turn.policy_logp, seat, t)
                            out.append(seq.build(s.prompt_index, s.group_index, seat))
                else:
                    out += [record.build(s.prompt_index, s.group_index, seat)
                            for record in sessions[seat].rows[i].records()]
                if seat == 0 and s.final is not None and self.config.train_on_final_solution:
                    seq = SequenceBuilder()
                    seq.context(s.final.prompt)
                    seq.generated(s.final.tokens, s.final.policy_logp, 0, len(s.turns))
                    out.append(seq.build(s.prompt_index, s.group_index, 0))
        return out


# Template and name tokens around one dialogue message ("<|im_end|>\n<|im_start|>user\nName: ").
_MESSAGE_OVERHEAD = 32


def _text_turn(seat: int, text: str) -> Turn:
    """An ExternalSeat's message: text only, no tokens to train."""
    return Turn(seat, text, [], np.zeros(0, np.float32), False)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for k in range(n):
        if a[k] != b[k]:
            return k
    return n
