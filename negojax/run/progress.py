"""A console progress bar for long work that is not a training step: what runs now (the phase),
how many items are done, their rate and the time left (tqdm's bar on stderr)."""
from __future__ import annotations


class Progress:
    """`total` items of work (dialogues, answers) expected; `phase(text)` names what runs now,
    `advance(n)` counts finished items. Work found beyond `total` (gsm8k, say, when it is
    prepared) raises the total rather than overflowing the bar."""

    def __init__(self, total: int, *, desc: str, unit: str):
        from tqdm import tqdm
        self.desc = desc
        self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)

    def phase(self, text: str) -> None:
        self._bar.set_description_str(f"{self.desc}: {text}", refresh=True)

    def advance(self, n: int = 1) -> None:
        if self._bar.n + n > self._bar.total:
            self._bar.total = self._bar.n + n
        self._bar.update(n)

    def close(self) -> None:
        """Ends the bar (again is a no-op: tqdm closes once), so that what is printed next
        starts a line of its own."""
        self._bar.set_description_str(self.desc, refresh=False)
        self._bar.close()
