"""The state in a file beside the manifests: atomic writes with a backup, under an flock(2) lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from reconciler.errors import LockHeld, StateError
from reconciler.state.base import describe_holder, holder_info
from reconciler.state.model import Fragments, State, dumps, parse


def backup_of(path: Path) -> Path:
    return path.with_name(path.name + ".backup")


def lock_of(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


class FileStore:
    """`--state PATH`. A symlink is resolved once: the lock, the backup and every write go beside its target."""

    def __init__(self, path: Path | str) -> None:
        self.given = Path(path)
        self.path = Path(os.path.realpath(self.given))
        self._fragments = Fragments()
        self._held: tuple[int, int] | None = None  # (st_dev, st_ino) of the lock file while this store holds it

    @property
    def location(self) -> str:
        return str(self.given)

    @contextlib.contextmanager
    def lock(self, operation: str, timeout: float = 0.0) -> Iterator[None]:
        with lock(self.path, operation, timeout) as held:
            self._held = held
            try:
                yield
            finally:
                self._held = None

    def _check_still_locked(self) -> None:
        """A lock file deleted (or replaced) while this run holds it lets another run lock a new one: from then
        on two runs could write this state. Refuse to write: what this run did so far is in the state."""
        if self._held is None:
            return
        try:
            st = os.stat(lock_of(self.path))
            now: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            now = None
        if now != self._held:
            raise StateError(f"the state lock {lock_of(self.path)} was deleted or replaced while this run held it: "
                             "another run may be writing this state now, so this run stops without writing",
                             hint="let the other run finish, then run `reconcile apply` again: it resumes "
                                  "whatever this run left in-progress; never delete a lock file by hand")

    def holder(self) -> str | None:
        lock_path = lock_of(self.path)
        try:
            fd = os.open(lock_path, os.O_RDONLY)
        except OSError:
            return None
        try:
            try:  # a shared lock is granted only when nobody holds the exclusive one; released at once
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return None
            except OSError:
                return describe_holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        finally:
            os.close(fd)

    def load(self) -> State | None:
        st = load(self.path)
        self._fragments.clear()
        return st

    def write(self, state: State, changed: Iterable[str] | None = None) -> None:
        self._check_still_locked()
        self._fragments.forget(changed)
        write(self.path, state, self._fragments)

    def missing_hint(self) -> str | None:
        backup = backup_of(self.path)
        if self.path.exists() or not backup.exists():
            return None
        return (f"there is no state file at {self.given}, but its backup {backup} exists: every move is planned as "
                f"if nothing were recorded; if the state was lost, restore it with `cp {backup} {self.path}`")

    def annotate(self, operation: str | None = None, git_commit: str | None = None) -> None:
        return None  # git keeps the file's versions, when it is committed

    def versions(self) -> list[dict[str, Any]]:
        return []

    def close(self) -> None:
        return None


def _restore_hint(path: Path) -> str:
    backup = backup_of(path)
    return (f"the previous state is kept at {backup}; inspect it and restore it with `cp {backup} {path}`"
            if backup.exists() else f"there is no backup ({backup} does not exist); restore it from git")


def load(path: Path) -> State | None:
    """The state at `path`, None when there is none yet; refuses anything it cannot trust."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StateError(f"cannot read the state file {path}: {e.strerror or e}") from None
    return parse(raw, f"file {path}", _restore_hint(path))


def write(path: Path, state: State, fragments: dict[str, str] | None = None) -> None:
    """Atomically replace the state: temp file + fsync + rename; the previous file becomes PATH.backup."""
    data = dumps(state, fragments)
    tmp = path.with_name(f".{path.name}.tmp")  # one name: writers hold the lock, and a killed one's is reused
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if path.exists():
            _keep_backup(path)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        reason = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise StateError(f"cannot write the state file {path}: {reason}; the previous state is intact",
                         hint="free space or fix permissions, then run apply again: it resumes") from None


def _keep_backup(path: Path) -> None:
    backup = backup_of(path)
    tmp = backup.with_name(backup.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        os.link(path, tmp)  # the old inode becomes the backup: no copy
    except OSError:
        tmp.write_bytes(path.read_bytes())
    os.replace(tmp, backup)


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _open_lock_file(lock_path: Path) -> int:
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StateError(f"cannot create the state lock {lock_path}: {e.strerror or e}; nothing was changed",
                         hint=f"make {lock_path.parent} writable for this user, or pass --state to a "
                              "writable place") from None


def _same_file(fd: int, lock_path: Path) -> bool:
    """Still the file at the path? One deleted (or replaced) after we opened it locks nothing for others."""
    try:
        st = os.stat(lock_path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


@contextlib.contextmanager
def lock(path: Path, operation: str, timeout: float = 0.0) -> Iterator[tuple[int, int]]:
    """An exclusive flock(2) on PATH.lock; it dies with the process, so no run leaves it stuck.

    Written here rather than with filelock: the lock file must keep naming its holder, and a
    contender must read that, not truncate it. After the lock is granted, the file must still be
    the one at the path: a lock file deleted by hand would otherwise let a second run take "the
    lock" on a new file while the first holds the old one.
    """
    lock_path = lock_of(path)
    deadline = time.monotonic() + max(timeout, 0.0)
    fd = _open_lock_file(lock_path)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise StateError(f"cannot lock {lock_path}: {e.strerror}") from None
                if time.monotonic() >= deadline:
                    try:
                        holder = describe_holder(lock_path.read_text("utf-8"))
                    except OSError:
                        holder = "another process"
                    waited = f" after waiting {timeout:g} s" if timeout > 0 else ""
                    raise LockHeld(f"the state lock {lock_path} is held by {holder}{waited}",
                                   hint="wait for that run to finish, or pass --lock-timeout SECONDS "
                                        "to wait for it") from None
                time.sleep(0.1)
                continue
            if _same_file(fd, lock_path):
                break
            os.close(fd)  # locked a file nobody else will ever see: take the one at the path instead
            fd = -1
            fd = _open_lock_file(lock_path)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder_info(operation)) + "\n").encode(), 0)
        mine = os.fstat(fd)
        try:
            yield mine.st_dev, mine.st_ino
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        if fd >= 0:
            os.close(fd)
