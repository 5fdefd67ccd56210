"""The StateStore protocol: where the state document lives, its lock, and a journal that writes it."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import Any, Protocol

from reconciler import __version__
from reconciler.audit import login_name
from reconciler.state.model import State


class StateStore(Protocol):
    """One state document and its lock: a file beside the manifests, or a row in PostgreSQL."""

    @property
    def location(self) -> str:
        """Where the state is, as `--state` takes it, never with a password (a plan file records it)."""
        ...

    def lock(self, operation: str, timeout: float = 0.0) -> AbstractContextManager[None]:
        """Exclusive for the whole run; it dies with the process; LockHeld names the holder."""
        ...

    def holder(self) -> str | None:
        """Who holds the lock now, without taking it; None when nobody does."""
        ...

    def load(self) -> State | None:
        """The current document, None when there is none yet; StateError for one it cannot trust."""
        ...

    def write(self, state: State, changed: Iterable[str] | None = None) -> None:
        """Store `state` (its serial already raised by one) atomically; `changed` names the records touched
        since the last write (None: maybe all). A store that can check it refuses a serial that is not one
        above the stored one."""
        ...

    def missing_hint(self) -> str | None:
        """When load() found no state: a warning worth showing (a backup that could be restored), or None."""
        ...

    def annotate(self, operation: str | None = None, git_commit: str | None = None) -> None:
        """What the next writes come from; a store that keeps every version records it with each."""
        ...

    def versions(self) -> list[dict[str, Any]]:
        """Every committed version, oldest first (serial, lineage, written_at, written_by, git_commit,
        operation, changed move names or None for all); [] for a store that keeps only the latest."""
        ...

    def close(self) -> None: ...


class Journal:
    """Writes a State again and again as a run records outcomes; each commit is a new serial."""

    def __init__(self, store: StateStore, state: State) -> None:
        self.store = store
        self.state = state
        self.writes = 0

    def commit(self, *changed: str) -> None:
        """Persist; `changed` names the records touched since the last commit."""
        self.state.serial += 1
        self.state.tool_version = __version__
        self.store.write(self.state, changed)
        self.writes += 1


def holder_info(operation: str) -> dict[str, Any]:
    """Who takes a lock: user, host, pid, operation, start time, CI run URL."""
    info: dict[str, Any] = {
        "user": login_name(), "host": socket.gethostname(), "pid": os.getpid(), "operation": operation,
        "started_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    server, run = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_RUN_ID")
    if server and run and os.environ.get("GITHUB_REPOSITORY"):
        info["ci_run"] = f"{server}/{os.environ['GITHUB_REPOSITORY']}/actions/runs/{run}"
    return info


def describe_holder(info: Any) -> str:
    """A lock holder's info (a dict, or its JSON text) as one phrase."""
    try:
        h = json.loads(info) if isinstance(info, (str, bytes)) else info
        parts = [f"{h.get('user')}@{h.get('host')}", f"pid {h.get('pid')}", f"running `{h.get('operation')}`",
                 f"since {h.get('started_at')}"]
        if h.get("ci_run"):
            parts.append(f"CI run {h['ci_run']}")
        return ", ".join(parts)
    except (ValueError, AttributeError):
        return "another process (it left no details)"
