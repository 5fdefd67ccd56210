"""The Platform protocol: what planning reads and what apply asks a platform to do.

Every read takes many ids at once: a remote platform answers a batch of a thousand customers in
one call, and the embedded one in one query. Unknown ids are left out of every answer.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from reconciler.model import Customer, MoveOrder, Request, Service, User


class Platform(Protocol):
    url: str  # as shown in plans: never with a credential

    def catalog(self) -> dict[str, Service]: ...

    def customers(self, ids: Iterable[str]) -> dict[str, Customer]:
        """The customers among `ids` that exist."""
        ...

    def users(self, customers: Collection[str]) -> dict[str, list[User]]:
        """Each listed customer's users, in platform order (a customer without users maps to [])."""
        ...

    def usage(self, resellers: Collection[str]) -> dict[str, dict[str, int]]:
        """Per reseller, per service: how many users of its direct customers hold the service."""
        ...

    def requests_of(self, customers: Collection[str], pending_only: bool = False) -> dict[str, list[Request]]:
        """Per customer, its requests in submission order (only Requested/InProgress ones with pending_only)."""
        ...

    def request(self, request_id: str) -> Request | None: ...

    def submit(self, request_id: str, order: MoveOrder) -> Request:
        """Submit a CustomerMove under a client-chosen id; a known id returns the existing request.

        The answer may not be final yet (Requested, InProgress): poll `request()` until it is.
        """
        ...

    def search(self, text: str, limit: int = 3) -> list[str]:
        """Customer ids that look like `text`, closest first (for "did you mean")."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Exportable(Protocol):
    """Optional: the whole platform as a seed document (`platform export`)."""

    def export(self) -> dict[str, Any]: ...


class Factory(Protocol):
    """What an entry point of group `reconciler.platforms` names: the URL and the [platform] table in, a
    Platform out. `options` holds the table of reconcile.toml when the URL came from it, plus
    `config_dir`, the directory relative paths in it are relative to."""

    def __call__(self, url: str, options: Mapping[str, Any]) -> Platform: ...


def refusals(order: MoveOrder, cust: Customer | None, dest: Customer | None,
             held: Sequence[tuple[str, str]]) -> tuple[list[str], int]:
    """Why a platform's engine refuses a CustomerMove, and how many sub-requests fail: every provider that
    executes moves itself (the embedded one, a test double) applies the same rules. `held`: (user, reason)
    of the customer's users on hold, in platform order."""
    if cust is None:
        return [f"customer {order.customer} does not exist"], 1
    if dest is None:
        return [f"reseller {order.to_reseller} does not exist"], 1
    if not dest.is_reseller:
        return [f"{order.to_reseller} is not a reseller"], 1
    if cust.is_reseller:
        return [f"customer {order.customer} is a reseller and cannot be moved"], 1
    if cust.location != dest.location:
        return [f"{order.to_reseller} is in {dest.location}, {order.customer} in {cust.location}"], 1
    return [f"user {uid} cannot be provisioned: {reason}" for uid, reason in held], len(held)
