"""One run per workdir: an exclusive lock file naming its holder (host, pid, start time).

Taken before a run writes anything and released when it ends. A second run on the same workdir
stops at once with a one-line error naming the holder; a lock left by a process that is no
longer running on this host is taken over with a warning. A workdir the lock created is removed
again at release when the run left nothing in it (a start refused after the lock was taken).
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket

from negojax import storage
from negojax.run.config import ConfigError

LOCK_FILE = "run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class WorkdirLock:
    def __init__(self, workdir: str):
        self.workdir = workdir
        self.path = storage.join(workdir, LOCK_FILE)
        self.held = False
        self.made = False

    def acquire(self) -> "WorkdirLock":
        self.made = not storage.exists(self.workdir)
        try:
            storage.makedirs(self.workdir)
        except OSError as error:
            raise ConfigError(f"config.workdir: cannot create {self.workdir} "
                              f"({error.strerror}); choose another --config.workdir") from None
        me = {"host": socket.gethostname(), "pid": os.getpid(),
              "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        if not storage.create_exclusive(self.path, json.dumps(me)):
            holder = self._holder()
            if holder.get("host") != me["host"] or _alive(int(holder["pid"])):
                raise ConfigError(
                    f"config.workdir: {self.workdir} is in use by pid "
                    f"{holder.get('pid', '?')} on {holder.get('host', '?')} since "
                    f"{holder.get('started', '?')}; wait for that run to end or pass another "
                    f"--config.workdir (if that run is gone, delete {self.path})") from None
            print(f"warning: taking over {self.path} from pid {holder.get('pid')}, which is no "
                  "longer running", flush=True)
            storage.write_text(self.path, json.dumps(me))
        self.held = True
        return self

    def _holder(self) -> dict:
        """The holder the lock file names. One that does not read (empty or torn: its writer died
        mid-write, or is writing it now) names nobody to check, so the user decides."""
        try:
            holder = json.loads(storage.read_text(self.path))
            int(holder["pid"])
            return holder
        except (OSError, ValueError, TypeError, KeyError):
            raise ConfigError(f"config.workdir: {self.path} is unreadable (empty or torn); if no "
                              "run uses this workdir, delete it and rerun") from None

    def release(self) -> None:
        if self.held:
            self.held = False
            storage.remove(self.path)
            if self.made and not storage.is_remote(self.workdir):  # object stores have no folders
                with contextlib.suppress(OSError):  # not empty: the run wrote something
                    os.rmdir(self.workdir)
