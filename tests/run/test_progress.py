"""The progress bar of long work outside the training loop (evaluation)."""
from negojax.run.progress import Progress


def test_phase_and_count_show_on_stderr_and_work_beyond_the_total_raises_it(capsys):
    progress = Progress(4, desc="eval", unit="item")
    progress.phase("model A, greedy dialogues")
    progress.advance(3)
    progress.phase("model B, single-turn answers")
    progress.advance(3)  # two more than expected: the total follows
    progress.close()
    progress.close()  # again: nothing
    err = capsys.readouterr().err
    assert "eval: model A, greedy dialogues" in err and "eval: model B, single-turn answers" in err
    assert "6/6" in err and "item/s" in err

