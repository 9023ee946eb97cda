"""One run per workdir: an exclusive lock file naming its holder (host, pid, start time).

Taken before a run writes anything and released when it ends. A second run on the same workdir
stops at once with a one-line error naming the holder; a lock left by a process that is no
longer running on this host is taken over with a warning.
"""
from __future__ import annotations

import datetime
import json
import os
import socket

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
        self.path = os.path.join(workdir, LOCK_FILE)
        self.held = False

    def acquire(self) -> "WorkdirLock":
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        except OSError as error:
            raise ConfigError(f"config.workdir: cannot create {os.path.dirname(self.path)} "
                              f"({error.strerror}); choose another --config.workdir") from None
        me = {"host": socket.gethostname(), "pid": os.getpid(),
              "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = self._holder()
            if holder.get("host") != me["host"] or _alive(int(holder.get("pid", 0))):
                raise ConfigError(
                    f"config.workdir: {os.path.dirname(self.path)} is in use by pid "
                    f"{holder.get('pid', '?')} on {holder.get('host', '?')} since "
                    f"{holder.get('started', '?')}; wait for that run to end or pass another "
                    f"--config.workdir (if that run is gone, delete {self.path})") from None
            print(f"warning: taking over {self.path} from pid {holder.get('pid')}, which is no "
                  "longer running", flush=True)
            self._write(me)
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(me, f)
        self.held = True
        return self

    def _holder(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):  # written half by a process that died: nobody holds it
            return {"host": socket.gethostname(), "pid": 0}

    def _write(self, info: dict) -> None:
        partial = f"{self.path}.{os.getpid()}"
        with open(partial, "w", encoding="utf-8") as f:
            json.dump(info, f)
        os.replace(partial, self.path)

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
