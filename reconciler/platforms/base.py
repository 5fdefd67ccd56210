"""The Platform protocol: what planning reads and what apply asks a platform to do."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from reconciler.model import Customer, MoveOrder, Request, Service, User


class Platform(Protocol):
    url: str

    def catalog(self) -> dict[str, Service]: ...

    def customers(self, ids: Iterable[str]) -> dict[str, Customer]:
        """The customers among `ids` that exist; unknown ids are left out."""
        ...

    def users(self, customer: str) -> Iterator[User]:
        """A customer's users in platform order."""
        ...

    def usage(self, reseller: str) -> dict[str, int]:
        """Per service, how many users of the reseller's direct customers hold it."""
        ...

    def pending_requests(self, customers: Iterable[str]) -> dict[str, list[str]]:
        """Per customer, ids of requests still Requested or InProgress."""
        ...

    def request(self, request_id: str) -> Request | None: ...

    def submit(self, request_id: str, order: MoveOrder) -> Request:
        """Submit and execute a CustomerMove; a known id returns the existing request."""
        ...

    def export(self) -> dict[str, Any]: ...

    def close(self) -> None: ...
