"""The workdir lock on its own: a lock file that does not read names nobody, so the user
decides (one line saying which file and what to do)."""
import pytest

from negojax.run.config import ConfigError
from negojax.run.lock import LOCK_FILE, WorkdirLock


@pytest.mark.parametrize("text", ["", '{"host": "vm", "pi', '"just a string"'])
def test_an_unreadable_lock_file_is_named_not_taken_for_pid_0(tmp_path, text):
    (tmp_path / LOCK_FILE).write_text(text)
    with pytest.raises(ConfigError) as err:
        WorkdirLock(str(tmp_path)).acquire()
    message = str(err.value)
    assert "\n" not in message and "pid 0" not in message
    assert f"{tmp_path / LOCK_FILE} is unreadable (empty or torn)" in message
    assert "delete it" in message
    assert (tmp_path / LOCK_FILE).read_text() == text  # nothing is taken over or deleted


def test_a_workdir_the_lock_made_goes_again_when_the_run_left_nothing_in_it(tmp_path):
    refused = WorkdirLock(str(tmp_path / "refused")).acquire()
    refused.release()  # a start refused after the lock: no empty folder stays
    assert not (tmp_path / "refused").exists()
    ran = WorkdirLock(str(tmp_path / "ran")).acquire()
    (tmp_path / "ran" / "metrics.jsonl").write_text("{}\n")
    ran.release()
    assert (tmp_path / "ran" / "metrics.jsonl").exists()
    WorkdirLock(str(tmp_path)).acquire().release()  # one that was there stays, empty or not
    assert tmp_path.is_dir()
