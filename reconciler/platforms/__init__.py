"""Platforms by URL scheme: the built-in ones, and any installed under entry point group `reconciler.platforms`."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, cast

from reconciler import __version__
from reconciler.errors import ConfigError, PlatformError
from reconciler.platforms.base import Exportable, Factory, Platform
from reconciler.urls import redact, scheme_of

GROUP = "reconciler.platforms"
BUILTIN = {
    "sqlite": "reconciler.platforms.sqlite:provider",
    "http": "reconciler.platforms.http:provider",
    "https": "reconciler.platforms.http:provider",
}


@dataclass(frozen=True)
class ProviderInfo:
    scheme: str
    target: str  # module:attribute
    distribution: str
    version: str


def _load(target: str) -> Factory:
    module, _, attr = target.partition(":")
    return cast(Factory, getattr(importlib.import_module(module), attr))


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=GROUP))


def providers() -> list[ProviderInfo]:
    """Every provider this installation can open: the built-ins first, then the installed ones by scheme."""
    out = [ProviderInfo(s, t, "reconciler", __version__) for s, t in BUILTIN.items()]
    for ep in sorted(_entry_points(), key=lambda e: e.name):
        if ep.name in BUILTIN:
            continue
        dist = ep.dist
        out.append(ProviderInfo(ep.name, ep.value, dist.name if dist else "?", dist.version if dist else "?"))
    return out


def factory(url: str) -> Factory:
    scheme = scheme_of(url)
    if scheme in BUILTIN:
        return _load(BUILTIN[scheme])
    for ep in _entry_points():
        if ep.name == scheme:
            try:
                return cast(Factory, ep.load())
            except Exception as e:  # a broken plug-in: say which, without its traceback
                raise ConfigError(f"the platform provider for {scheme}:// ({ep.value}) failed to load: "
                                  f"{type(e).__name__}: {e}",
                                  hint="reinstall it, or check `reconcile platform providers`") from None
    known = ", ".join(f"{p.scheme}://" for p in providers())
    what = f"scheme {scheme}://" if scheme else "no scheme"
    raise ConfigError(f"unsupported platform URL {redact(url)!r} ({what}); installed providers: {known}",
                      hint="use sqlite:///PATH for the embedded platform, https://HOST for the Platform API, or "
                           "install the provider package for your platform")


def open_platform(url: str, options: Mapping[str, Any] | None = None) -> Platform:
    """The platform behind `url`; a provider's own failures arrive as PlatformError."""
    return factory(url)(url, options or {})


def export(platform: Platform) -> dict[str, Any]:
    if not isinstance(platform, Exportable):
        raise PlatformError(f"the platform at {platform.url} cannot export itself: its provider does not offer it",
                            hint="export is offered by the built-in sqlite:/// and http(s):// providers")
    return platform.export()
