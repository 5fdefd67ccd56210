"""Platforms reconciler can plan against and provision through."""

from __future__ import annotations

from reconciler.errors import ConfigError
from reconciler.platforms.base import Platform


def open_platform(url: str, seed: str | None = None) -> Platform:
    """The platform behind `url`; only the embedded `sqlite:///PATH` exists in v1."""
    if url.startswith("sqlite:///"):
        from reconciler.platforms.sqlite import SqlitePlatform

        return SqlitePlatform.open(url, seed=seed)
    raise ConfigError(f"unsupported platform URL {url!r}",
                      hint="use sqlite:///PATH for the embedded platform")
