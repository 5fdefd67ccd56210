"""The state file: versioned JSON journal of moves and their requests; atomic writes under a lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reconciler import __version__
from reconciler.errors import LockHeld, StateError

STATE_VERSION = 1
MoveStatus = Literal["applied", "adopted", "in-progress", "failed"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestRecord(_Model):
    id: str
    type: str = "CustomerMove"
    status: str
    sub_requests: int = 0
    failed_sub_requests: int = 0
    error: str | None = None
    submitted_at: str | None = None
    completed_at: str | None = None


class ManifestRef(_Model):
    file: str
    sha256: str
    git_commit: str | None = None
    line: int | None = None
    file_sha256: str | None = None  # of the file's bytes, when it holds this one document: plan skips parsing it




class MoveRecord(_Model):
    manifest: ManifestRef
    customer: str
    from_reseller: str | None = None
    to_reseller: str
    location: str | None = None
    status: MoveStatus
    applied_at: str | None = None
    applied_by: str | None = None
    applied_serial: int | None = None
    customer_fingerprint: str | None = None  # the customer's platform digest when the outcome was recorded
    requests: list[RequestRecord] = Field(default_factory=list)

    @property
    def last_request(self) -> RequestRecord | None:
        return self.requests[-1] if self.requests else None

    @property
    def done(self) -> bool:
        return self.status in ("applied", "adopted")

    # What manifests.load needs to plan this move as known without parsing it.
    @property
    def digest(self) -> str:
        return self.manifest.sha256

    @property
    def file_sha256(self) -> str | None:
        return self.manifest.file_sha256

    @property
    def line(self) -> int | None:
        return self.manifest.line


class State(_Model):
    version: int = STATE_VERSION
    lineage: str = Field(default_factory=lambda: str(uuid.uuid4()))
    serial: int = 0
    tool_version: str = __version__
    moves: dict[str, MoveRecord] = Field(default_factory=dict)

    def known(self) -> dict[str, dict[str, MoveRecord]]:
        """sha256 of a manifest file's bytes -> name -> record, for the applied and adopted moves whose file
        held that one document (manifests.load's fast path)."""
        out: dict[str, dict[str, MoveRecord]] = {}
        for name, rec in self.moves.items():
            if rec.done and rec.manifest.file_sha256:
                out.setdefault(rec.manifest.file_sha256, {})[name] = rec
        return out

    def latest_done(self) -> dict[str, tuple[int, str]]:
        """Per customer, (applied_serial, name) of its latest applied or adopted move."""
        out: dict[str, tuple[int, str]] = {}
        for name, rec in self.moves.items():
            if rec.done:
                key = (rec.applied_serial or 0, name)
                if rec.customer not in out or key > out[rec.customer]:
                    out[rec.customer] = key
        return out


def backup_of(path: Path) -> Path:
    return path.with_name(path.name + ".backup")


def load(path: Path) -> State | None:
    """The state at `path`, None when there is none yet; refuses anything it cannot trust."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StateError(f"cannot read the state file {path}: {e.strerror or e}") from None
    backup = backup_of(path)
    restore = (f"the previous state is kept at {backup}; inspect it and restore it with `cp {backup} {path}`"
               if backup.exists() else f"there is no backup ({backup} does not exist); restore it from git")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise StateError(f"the state file {path} does not parse ({e}); nothing was changed", hint=restore) from None
    if not isinstance(data, dict):
        raise StateError(f"the state file {path} is not a JSON object; nothing was changed", hint=restore)
    version = data.get("version")
    if version != STATE_VERSION:
        raise StateError(f"the state file {path} has version {version!r}; this reconciler {__version__} "
                         f"reads version {STATE_VERSION} only; nothing was changed",
                         hint="upgrade reconciler if a newer one wrote it; " + restore)
    try:
        return State.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise StateError(f"the state file {path} is not valid: {where}: {first['msg']}; nothing was changed",
                         hint=restore) from None


def _record_json(rec: MoveRecord) -> str:
    text = json.dumps(rec.model_dump(mode="json"), indent=2, ensure_ascii=False)
    return text.replace("\n", "\n    ")


def dumps(state: State, fragments: dict[str, str] | None = None) -> bytes:
    """Stable, reviewable JSON (two-space indent, records in insertion order).

    `fragments` caches each record's text so that journaling one move does not re-serialise
    every other record: the bytes are the same either way.
    """
    head = {k: v for k, v in state.model_dump(mode="json", exclude={"moves"}).items()}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},")
    if not state.moves:
        lines.append('  "moves": {}')
    else:
        lines.append('  "moves": {')
        items = []
        for name, rec in state.moves.items():
            text = fragments.get(name) if fragments is not None else None
            if text is None:
                text = _record_json(rec)
                if fragments is not None:
                    fragments[name] = text
            items.append(f"    {json.dumps(name, ensure_ascii=False)}: {text}")
        lines.append(",\n".join(items))
        lines.append("  }")
    lines.append("}")
    return ("\n".join(lines) + "\n").encode("utf-8")


class Journal:
    """Writes a State again and again as a run records outcomes; each commit is a new serial."""

    def __init__(self, path: Path, state: State) -> None:
        self.path = path
        self.state = state
        self.writes = 0
        self._fragments: dict[str, str] = {}

    def commit(self, *changed: str) -> None:
        """Persist; `changed` names the records touched since the last commit (their text is rebuilt)."""
        for name in changed:
            self._fragments.pop(name, None)
        self.state.serial += 1
        self.state.tool_version = __version__
        write(self.path, self.state, self._fragments)
        self.writes += 1


def write(path: Path, state: State, fragments: dict[str, str] | None = None) -> None:
    """Atomically replace the state: temp file + fsync + rename; the previous file becomes PATH.backup."""
    data = dumps(state, fragments)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # one name: writers hold the lock, and a killed one's is reused
    try:
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


def holder_info(operation: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "user": _user(), "host": socket.gethostname(), "pid": os.getpid(), "operation": operation,
        "started_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    server, run = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_RUN_ID")
    if server and run and os.environ.get("GITHUB_REPOSITORY"):
        info["ci_run"] = f"{server}/{os.environ['GITHUB_REPOSITORY']}/actions/runs/{run}"
    return info


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return str(os.getuid())


def _describe(raw: str) -> str:
    try:
        h = json.loads(raw)
        parts = [f"{h.get('user')}@{h.get('host')}", f"pid {h.get('pid')}", f"running `{h.get('operation')}`",
                 f"since {h.get('started_at')}"]
        if h.get("ci_run"):
            parts.append(f"CI run {h['ci_run']}")
        return ", ".join(parts)
    except (ValueError, AttributeError):
        return "another process (it left no details)"


@contextlib.contextmanager
def lock(path: Path, operation: str, timeout: float = 0.0) -> Iterator[None]:
    """An exclusive flock(2) on PATH.lock; it dies with the process, so no run leaves it stuck.

    Written here rather than with filelock: the lock file must keep naming its holder, and a
    contender must read that, not truncate it.
    """
    lock_path = path.with_name(path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise StateError(f"cannot lock {lock_path}: {e.strerror}") from None
                if time.monotonic() >= deadline:
                    try:
                        holder = _describe(lock_path.read_text("utf-8"))
                    except OSError:
                        holder = "another process"
                    waited = f" after waiting {timeout:g} s" if timeout > 0 else ""
                    raise LockHeld(f"the state lock {lock_path} is held by {holder}{waited}",
                                   hint="wait for that run to finish, or pass --lock-timeout SECONDS "
                                        "to wait for it") from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder_info(operation)) + "\n").encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
