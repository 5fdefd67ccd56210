"""The platform domain as plain values: catalog, resellers' offerings, customers, users, requests."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

# `(?!\n)`: Python's `$` (jsonschema uses `re.search`) also matches before a final newline; ECMA regexes
# (JSON Schema elsewhere) read it the same way. pydantic models using it need `regex_engine="python-re"`.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$(?!\n)"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$(?!\n)"  # a move's metadata.name (at most 63 characters)
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

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> Service:
        """The seed's (and the Platform API's) shape of a service."""
        return Service(d["id"], d.get("name") or d["id"], property_defs(d.get("properties")))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name,
                "properties": {n: {"type": p.type, "sensitive": p.sensitive} for n, p in self.properties.items()}}


def property_defs(props: Mapping[str, Any] | None) -> dict[str, PropertyDef]:
    """A service's `properties` document (name -> {type, sensitive}) as PropertyDefs."""
    return {n: PropertyDef(n, p["type"], bool(p.get("sensitive", False))) for n, p in (props or {}).items()}


@dataclass(frozen=True, slots=True)
class Offering:
    """What a reseller can provision of one service."""

    service: str
    plans: tuple[str, ...]
    sals: dict[str, Props]
    max_users: int | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"plans": list(self.plans), "sals": {k: dict(v) for k, v in self.sals.items()}}
        if self.max_users is not None:
            doc["maxUsers"] = self.max_users
        return doc

    @staticmethod
    def from_json(service: str, d: Mapping[str, Any]) -> Offering:
        sals = {k: dict(v or {}) for k, v in (d.get("sals") or {}).items()}
        return Offering(service, tuple(d.get("plans") or ()), sals, d.get("maxUsers"))


@dataclass(frozen=True, slots=True)
class Subscription:
    """A customer's use of a service."""

    plan: str
    sal: str
    overrides: Props = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"plan": self.plan, "sal": self.sal, "overrides": dict(self.overrides)}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> Subscription:
        return Subscription(d["plan"], d["sal"], dict(d.get("overrides") or {}))


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

    def to_json(self) -> dict[str, Any]:
        """The seed's (and the Platform API's) shape of a user."""
        return {"id": self.id, "services": {s: {"sal": x.sal, "overrides": dict(x.overrides)}
                                            for s, x in sorted(self.services.items())}, "hold": self.hold}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> User:
        return User(d["id"], {s: UserService(x["sal"], dict(x.get("overrides") or {}))
                              for s, x in (d.get("services") or {}).items()}, d.get("hold"))


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    location: str
    parent: str | None
    offerings: dict[str, Offering] | None  # None: not a reseller
    subscriptions: dict[str, Subscription]

    @property
    def is_reseller(self) -> bool:
        return self.offerings is not None

    def to_json(self) -> dict[str, Any]:
        """The seed's (and the Platform API's) shape of a customer, without its users."""
        doc: dict[str, Any] = {"id": self.id, "name": self.name, "location": self.location, "parent": self.parent}
        if self.offerings is not None:
            doc["reseller"] = {"services": {s: o.to_json() for s, o in self.offerings.items()}}
        doc["services"] = {s: x.to_json() for s, x in self.subscriptions.items()}
        return doc

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> Customer:
        reseller = d.get("reseller")
        return Customer(
            id=d["id"], name=d.get("name") or d["id"], location=d["location"], parent=d.get("parent"),
            offerings=None if reseller is None else {
                s: Offering.from_json(s, o or {}) for s, o in (reseller.get("services") or {}).items()},
            subscriptions={s: Subscription.from_json(x) for s, x in (d.get("services") or {}).items()})


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
    # What the request replaced (previous parent, subscriptions, users' SALs): property values inside,
    # so never copied into the state; a revert reads it from the platform.
    replaced: dict[str, Any] | None = None

    @property
    def final(self) -> bool:
        return self.status in TERMINAL

    def to_json(self) -> dict[str, Any]:
        """The fields a state record keeps (no `replaced`: it holds values)."""
        return {
            "id": self.id, "type": self.type, "customer": self.customer, "status": self.status,
            "error": self.error, "sub_requests": self.sub_requests,
            "failed_sub_requests": self.failed_sub_requests,
            "submitted_at": self.submitted_at, "completed_at": self.completed_at,
        }

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> Request:
        return Request(d["id"], d.get("type", "CustomerMove"), d["customer"], d["status"], d.get("error"),
                       d.get("sub_requests", 0), d.get("failed_sub_requests", 0), d.get("submitted_at"),
                       d.get("completed_at"), d.get("replaced"))


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


# -- sensitive values, concealed -----------------------------------------------------------------
# The read-only token of the Platform API never sees a sensitive value: it gets this digest in its place
# (the sha256 of the value's canonical JSON). Planning compares values through it, and every fingerprint is
# taken over concealed values, so a plan made with the read token matches an apply made with the write one.
SECRET_PREFIX = "(sensitive sha256:"
Secrets = Mapping[str, "set[str] | frozenset[str]"]  # service -> its sensitive property names


def secrets_of(catalog: Mapping[str, Service]) -> dict[str, set[str]]:
    return {s: {n for n, p in svc.properties.items() if p.sensitive} for s, svc in catalog.items()}


_CONCEALED: dict[tuple[type, Any], str] = {}  # a plan conceals the same few values for thousands of users
_CONCEALED_MAX = 4096


def conceal(value: Any) -> Any:
    """A sensitive value's stand-in; idempotent, and None (no value) stays None."""
    if value is None or (isinstance(value, str) and value.startswith(SECRET_PREFIX) and value.endswith(")")):
        return value
    kind = type(value)
    if kind is not str and kind is not int and kind is not bool:  # floats: -0.0 == 0.0, but not as JSON
        return f"{SECRET_PREFIX}{sha256_of(value)})"
    key = (kind, value)
    out = _CONCEALED.get(key)
    if out is None:
        out = f"{SECRET_PREFIX}{sha256_of(value)})"
        if len(_CONCEALED) < _CONCEALED_MAX:
            _CONCEALED[key] = out
    return out


def concealed(props: Props, names: set[str] | frozenset[str]) -> Props:
    if not names or names.isdisjoint(props):
        return props
    return {k: conceal(v) if k in names else v for k, v in props.items()}


def conceal_customer(doc: dict[str, Any], secret: Secrets) -> dict[str, Any]:
    """A customer document (Customer.to_json) with every sensitive value concealed, in place."""
    for svc, sub in (doc.get("services") or {}).items():
        if sub and sub.get("overrides"):
            sub["overrides"] = concealed(sub["overrides"], secret.get(svc, set()))
    for svc, off in ((doc.get("reseller") or {}).get("services") or {}).items():
        if off and off.get("sals"):
            off["sals"] = {k: concealed(v or {}, secret.get(svc, set())) for k, v in off["sals"].items()}
    return doc


def conceal_user(doc: dict[str, Any], secret: Secrets) -> dict[str, Any]:
    """A user document (User.to_json) with every sensitive value concealed, in place."""
    for svc, us in (doc.get("services") or {}).items():
        if us and us.get("overrides"):
            us["overrides"] = concealed(us["overrides"], secret.get(svc, set()))
    return doc


def customer_fingerprint(customer: Customer, parent: Customer | None, secret: Secrets | None = None,
                         offered_cache: dict[tuple[str, tuple[str, ...]], str] | None = None) -> str:
    """What a recorded move is compared with to tell drift: the customer (parent, location, plans, SALs,
    overrides) and what its parent offers it, as read from the platform (never a digest the platform keeps);
    sensitive values concealed, so that both tokens of a platform give the same fingerprint.

    The sha256 of the canonical JSON of {"customer": ..., "offered": ...}; `offered_cache` keeps the canonical
    JSON of what a parent offers for a set of services (the same for all its customers), keyed by the parent's
    id: give one per snapshot of the platform."""
    services = tuple(sorted(customer.subscriptions))
    key = (parent.id if parent is not None else "", services)
    offered_json = offered_cache.get(key) if offered_cache is not None else None
    if offered_json is None:
        offers = (parent.offerings or {}) if parent is not None else {}
        secret = secret or {}
        offered = {}
        for s in services:
            if s in offers:
                o = offers[s].to_json()
                o["sals"] = {k: concealed(v, secret.get(s, set())) for k, v in o["sals"].items()}
                offered[s] = o
        offered_json = canonical_json(offered)
        if offered_cache is not None:
            offered_cache[key] = offered_json
    customer_json = canonical_json(conceal_customer(customer.to_json(), secret or {}))
    return hashlib.sha256(f'{{"customer":{customer_json},"offered":{offered_json}}}'.encode()).hexdigest()
