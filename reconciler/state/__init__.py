"""Where the state lives: a file (`--state PATH`) or PostgreSQL (`--state postgresql://...`)."""

from __future__ import annotations

from reconciler.state.base import Journal, StateStore
from reconciler.state.model import STATE_VERSION, ManifestRef, MoveRecord, MoveStatus, RequestRecord, State

__all__ = ["STATE_VERSION", "Journal", "ManifestRef", "MoveRecord", "MoveStatus", "RequestRecord", "State",
           "StateStore", "is_url", "open_store"]


def is_url(location: str) -> bool:
    return location.startswith(("postgresql://", "postgres://"))


def open_store(location: str) -> StateStore:
    """The store behind a `--state` value: a PostgreSQL URL, or a file path."""
    if is_url(location):
        from reconciler.state.postgres import PostgresStore

        return PostgresStore(location)
    from reconciler.state.file import FileStore

    return FileStore(location)
