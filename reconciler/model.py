"""The platform domain as plain values: catalog, resellers' offerings, customers, users, requests."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"
ID_RE = re.compile(ID_PATTERN)
PropertyType = Literal["string", "integer", "number", "boolean"]
RequestStatus = Literal["Requested", "InProgress", "Provisioned", "Failed"]
TERMINAL = ("Provisioned", "Failed")
PENDING = ("Requested", "InProgress")
SENSITIVE = "(sensitive)"

Props = dict[str, Any]


@dataclass(frozen=True, slots=True)
class PropertyDef:
    name: str
    type: PropertyType
    sensitive: bool = False

    def accepts(self, value: Any) -> bool:
        """JSON typing: booleans are not numbers, integers are numbers."""
        if value is None:
            return True
        if self.type == "boolean":
            return isinstance(value, bool)
        if isinstance(value, bool):
            return False
        if self.type == "integer":
            return isinstance(value, int) and -(2**63) <= value < 2**63
        if self.type == "number":
            return isinstance(value, (int, float)) and value == value and value not in (
                float("inf"), float("-inf"))
        return isinstance(value, str)


@dataclass(frozen=True, slots=True)
class Service:
    id: str
    name: str
    properties: dict[str, PropertyDef]


@dataclass(frozen=True, slots=True)
class Offering:
    """What a reseller can provision of one service."""

    service: str
    plans: tuple[str, ...]
    sals: dict[str, Props]
    max_users: int | None = None


@dataclass(frozen=True, slots=True)
class Subscription:
    """A customer's use of a service."""

    plan: str
    sal: str
    overrides: Props = field(default_factory=dict)


# Users are made by the hundred thousand: plain slotted classes (frozen ones construct twice as slowly).
@dataclass(slots=True)
class UserService:
    sal: str
    overrides: Props = field(default_factory=dict)


@dataclass(slots=True)
class User:
    id: str
    services: dict[str, UserService]
    hold: str | None = None


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    location: str
    parent: str | None
    offerings: dict[str, Offering] | None  # None: not a reseller
    subscriptions: dict[str, Subscription]
    digest: str = ""  # content fingerprint kept by the platform

    @property
    def is_reseller(self) -> bool:
        return self.offerings is not None


@dataclass(frozen=True, slots=True)
class Request:
    id: str
    type: str
    customer: str
    status: str
    error: str | None = None
    sub_requests: int = 0
    failed_sub_requests: int = 0
    submitted_at: str | None = None
    completed_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "type": self.type, "customer": self.customer, "status": self.status,
            "error": self.error, "sub_requests": self.sub_requests,
            "failed_sub_requests": self.failed_sub_requests,
            "submitted_at": self.submitted_at, "completed_at": self.completed_at,
        }


@dataclass(frozen=True, slots=True)
class MoveOrder:
    """What a CustomerMove request provisions: the new parent, subscriptions and SAL mapping."""

    customer: str
    to_reseller: str
    subscriptions: dict[str, Subscription]
    sal_map: dict[str, dict[str, str]]  # service -> source SAL -> destination SAL, applied to every user

    def to_json(self) -> dict[str, Any]:
        return {
            "customer": self.customer, "to_reseller": self.to_reseller,
            "subscriptions": {s: {"plan": x.plan, "sal": x.sal, "overrides": dict(x.overrides)}
                              for s, x in sorted(self.subscriptions.items())},
            "sal_map": {s: dict(sorted(m.items())) for s, m in sorted(self.sal_map.items())},
        }

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> MoveOrder:
        return MoveOrder(
            customer=d["customer"], to_reseller=d["to_reseller"],
            subscriptions={s: Subscription(x["plan"], x["sal"], dict(x["overrides"]))
                           for s, x in d["subscriptions"].items()},
            sal_map={s: dict(m) for s, m in d["sal_map"].items()},
        )


def effective(sal_props: Props | None, customer_overrides: Props, user_overrides: Props) -> Props:
    """SAL properties, then customer overrides, then user overrides: later wins."""
    out: Props = dict(sal_props or {})
    out.update(customer_overrides)
    out.update(user_overrides)
    return out


def utcnow() -> str:
    """The one timestamp format of requests and records: UTC, seconds, `Z`."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_of(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def customer_digest(customer: Mapping[str, Any], users: Iterable[Mapping[str, Any]]) -> str:
    """Fingerprint of a customer's whole provisioned state (itself, its subscriptions, its users)."""
    h = hashlib.sha256(canonical_json(customer).encode("utf-8"))
    h.update(b"\n")
    h.update(canonical_json(list(users)).encode("utf-8"))
    return h.hexdigest()
