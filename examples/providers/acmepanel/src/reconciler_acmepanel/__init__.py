"""`acmepanel://HOST[:PORT][/PATH]`: the ACME hosting panel, which speaks the Platform API v1.

An example of a third-party provider. It owns a URL scheme of its own (entry point `acmepanel` in
group `reconciler.platforms`, see pyproject.toml) and delegates every call to reconcile's built-in
HTTP provider: `https://HOST[:PORT][/PATH]`, or plain `http://` when HOST is loopback (a panel
served on this machine, e.g. `reconcile platform serve`). The token comes from `RECONCILE_TOKEN`,
as for the built-in provider. A vendor whose panel has another API would implement the same
methods against it instead.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from reconciler.errors import ConfigError, PlatformError
from reconciler.model import Customer, MoveOrder, Request, Service, User
from reconciler.platforms import open_platform
from reconciler.platforms.base import Exportable, Platform
from reconciler.urls import is_loopback

SCHEME = "acmepanel"




def api_url(url: str) -> str:
    """acmepanel://panel.example.com/api -> https://panel.example.com/api (http:// on loopback)."""
    parts = urlsplit(url)
    if parts.scheme != SCHEME or not parts.hostname:
        raise ConfigError(f"not an ACME panel URL: {url!r}", hint="use acmepanel://HOST[:PORT][/PATH]")
    scheme = "http" if is_loopback(parts.hostname) else "https"
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


class AcmePanel:
    """The Platform protocol, by delegation; shown in plans under its own acmepanel:// URL."""

    def __init__(self, url: str, api: Platform) -> None:
        self.url = url
        self._api = api

    def catalog(self) -> dict[str, Service]:
        return self._api.catalog()

    def customers(self, ids: Iterable[str]) -> dict[str, Customer]:
        return self._api.customers(ids)

    def users(self, customers: Collection[str]) -> dict[str, list[User]]:
        return self._api.users(customers)

    def usage(self, resellers: Collection[str]) -> dict[str, dict[str, int]]:
        return self._api.usage(resellers)

    def requests_of(self, customers: Collection[str], pending_only: bool = False) -> dict[str, list[Request]]:
        return self._api.requests_of(customers, pending_only)

    def request(self, request_id: str) -> Request | None:
        return self._api.request(request_id)

    def submit(self, request_id: str, order: MoveOrder) -> Request:
        return self._api.submit(request_id, order)

    def search(self, text: str, limit: int = 3) -> list[str]:
        return self._api.search(text, limit)

    def export(self) -> dict[str, Any]:
        if not isinstance(self._api, Exportable):
            raise PlatformError(f"{self.url} cannot export itself")
        return self._api.export()

    def close(self) -> None:
        self._api.close()


def provider(url: str, options: Mapping[str, Any]) -> AcmePanel:
    """The entry point: reconcile calls it with the platform URL and the [platform] table of reconcile.toml."""
    return AcmePanel(url.split("?", 1)[0], open_platform(api_url(url), options))
