"""One filesystem for everything a run writes and reads back, local or in an object store.

Every artifact of a run (metrics, transcripts, TensorBoard events, the export, the report, the
judge cache, the workdir lock) goes through this module, so `--config.workdir=gs://bucket/run`
behaves as a local folder does. It is built on fsspec: a local path is the local filesystem, a
URL (`gs://`, served by gcsfs) is its protocol's filesystem. fsspec rather than etils.epath,
because an object store has no append and fsspec exposes what stands in for one, GCS's compose
(`merge`); epath itself reads `gs://` through gcsfs when TensorFlow is absent, so both name the
same client. Orbax checkpoints take the same URL and write it through tensorstore.

Logs grow by appends (`Appender`): locally each write is appended and fsynced; in an object store
writes are buffered and uploaded at most every `FLUSH_EVERY_S` seconds (and at every checkpoint
and at the end), each upload a new part composed onto the object, never a rewrite of the whole.
"""
from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
import posixpath
import shutil
import tempfile
import time
import uuid
from typing import Iterator

import fsspec

# A crash loses at most this much of an object-store log; locally nothing is buffered.
FLUSH_EVERY_S = 30.0


def is_remote(path: str) -> bool:
    return "://" in str(path) and not str(path).startswith("file://")


def _fs(path: str):
    """(filesystem, the path in that filesystem's own terms). Object-store listings are not
    cached: other hosts and processes write the same bucket (a resumed run, eval after train)."""
    if is_remote(path):
        return fsspec.core.url_to_fs(str(path), use_listings_cache=False)
    return fsspec.core.url_to_fs(str(path))


def join(base: str, *parts: str) -> str:
    return posixpath.join(base, *parts) if is_remote(base) else os.path.join(base, *parts)


def parent(path: str) -> str:
    return posixpath.dirname(path.rstrip("/")) if is_remote(path) else os.path.dirname(
        os.path.abspath(path))


def exists(path: str) -> bool:
    fs, p = _fs(path)
    return fs.exists(p)


def isfile(path: str) -> bool:
    fs, p = _fs(path)
    return fs.isfile(p)


def isdir(path: str) -> bool:
    fs, p = _fs(path)
    return fs.isdir(p)


def makedirs(path: str) -> None:
    """A folder and its parents; object stores have no folders, so there it does nothing."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


def open(path: str, mode: str = "r", **kwargs):  # noqa: A001 - the module is used qualified
    """A file object for `path` (text modes take encoding; utf-8 when not given)."""
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    if "w" in mode or "a" in mode or "x" in mode:
        makedirs(parent(path))
    fs, p = _fs(path)
    return fs.open(p, mode, **kwargs)


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def write_text(path: str, text: str) -> None:
    """The whole file at once: in an object store it appears when complete; locally it is
    written beside and renamed, so a reader never sees half of it."""
    if is_remote(path):
        fs, p = _fs(path)
        fs.pipe_file(p, text.encode("utf-8"))
        return
    makedirs(parent(path))
    partial = f"{path}.{uuid.uuid4().hex[:12]}.partial"  # threads may write the same path
    with builtins.open(partial, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(partial, path)


def create_exclusive(path: str, text: str) -> bool:
    """Write `path` only if it does not exist yet; False when it does. Atomic locally (O_EXCL)
    and on GCS (an if-generation-match-0 precondition)."""
    if is_remote(path):
        fs, p = _fs(path)
        if fs.exists(p):
            return False
        try:
            fs.pipe_file(p, text.encode("utf-8"), mode="create")
        except FileExistsError:
            return False
        return True
    makedirs(parent(path))
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return True


def remove(path: str) -> None:
    """Delete a file; one already gone is not an error."""
    fs, p = _fs(path)
    try:
        fs.rm_file(p)
    except FileNotFoundError:
        pass


class Appender:
    """A file that grows by appends: a log (metrics.jsonl, transcripts.jsonl, TensorBoard
    events). Locally every write is appended and fsynced at once. In an object store, writes
    are held and uploaded at most every `every_s` seconds, or on `flush()` and `close()`; each
    upload writes a part object and composes it onto the log, so the log is never rewritten."""

    def __init__(self, path: str, *, every_s: float = FLUSH_EVERY_S):
        self.path, self.every_s = str(path), every_s
        self._remote = is_remote(self.path)
        self._pending = bytearray()
        self._uploaded_at = time.monotonic()

    def write(self, data: bytes | str) -> None:
        data = data.encode("utf-8") if isinstance(data, str) else data
        if not self._remote:
            makedirs(parent(self.path))
            with builtins.open(self.path, "ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return
        self._pending += data
        if time.monotonic() - self._uploaded_at >= self.every_s:
            self.flush()

    def flush(self) -> None:
        """Upload what is held (object stores; locally every write is already on disk)."""
        self._uploaded_at = time.monotonic()
        if not self._pending:
            return
        fs, p = _fs(self.path)
        data, self._pending = bytes(self._pending), bytearray()
        if not fs.exists(p):
            fs.pipe_file(p, data)
            return
        part = f"{p}.part-{uuid.uuid4().hex}"
        fs.pipe_file(part, data)
        try:
            fs.merge(p, [p, part])
        finally:
            fs.rm_file(part)

    def close(self) -> None:
        self.flush()


def local_copy(path: str) -> str:
    """A local folder holding an object-store folder's files, kept in the cache by URL and
    downloaded again only when the objects changed; a local path is returned as it is."""
    if not is_remote(path):
        return path
    from negojax.checkpoints.default_model import cache_dir
    fs, p = _fs(path)
    p = p.rstrip("/")
    objects = fs.find(p, detail=True)
    if not objects:
        raise FileNotFoundError(f"{path}: no such folder in the object store")
    # What identifies a download: each object's name, size and generation (or time written).
    signature = json.dumps(sorted(
        (name[len(p) + 1:], info.get("size"), str(info.get("generation") or info.get("updated")
                                                  or info.get("mtime")))
        for name, info in objects.items()))
    cache = os.path.join(cache_dir(), "remote")
    os.makedirs(cache, exist_ok=True)
    key = hashlib.sha256(p.encode()).hexdigest()[:16]
    target = os.path.join(cache, f"{posixpath.basename(p)}-{key}")
    manifest = os.path.join(target, ".negojax-remote")
    if os.path.isfile(manifest) and read_text(manifest) == signature:
        return target
    partial = tempfile.mkdtemp(dir=cache)
    try:
        fs.get(p + "/", partial + "/", recursive=True)
        write_text(os.path.join(partial, ".negojax-remote"), signature)
        shutil.rmtree(target, ignore_errors=True)  # an older download of the same URL
        os.replace(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


@contextlib.contextmanager
def staged_dir(path: str) -> Iterator[str]:
    """A local folder to write `path`'s files into, which becomes `path` only when the block
    ends without an error (replacing what was there), so that a write cut short (a signal, a full
    disk) never looks whole: locally a sibling folder renamed into place, for an object store a
    temporary folder uploaded. On an error the folder is removed and `path` is left as it was."""
    if not is_remote(path):
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        partial = tempfile.mkdtemp(prefix=f"{os.path.basename(path)}.partial-", dir=parent)
        os.chmod(partial, 0o755)  # mkdtemp's 0o700 would make the result private to this user
        try:
            yield partial
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        if os.path.isdir(path):
            replaced = f"{partial}.replaced"
            os.rename(path, replaced)
            os.rename(partial, path)
            shutil.rmtree(replaced)
        else:
            os.rename(partial, path)
        return
    with tempfile.TemporaryDirectory(prefix="negojax-upload-") as local:
        yield local
        fs, p = _fs(path)
        if fs.exists(p):
            fs.rm(p, recursive=True)
        fs.put(local.rstrip("/") + "/", p.rstrip("/") + "/", recursive=True)
