"""An in-memory platform for tests: the Platform protocol (and Exportable) over plain dicts.

pip-tools tests its resolver against a FakeRepository; this is ours. It is no mock: it keeps the
embedded engine's semantics (refusals, the atomic move, what a request replaced, the order of
everything it returns), and tests/contracts/test_platform_contract.py runs the same tests against it,
the SQLite platform and the served one, so it stays their peer. Synchronous, like SqlitePlatform.submit.
"""

from __future__ import annotations

import copy
import difflib
import json
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler import seed as seeds
from reconciler.model import PENDING, Customer, MoveOrder, PropertyDef, Request, Service, Subscription, User, utcnow
from reconciler.platforms.base import refusals

URL = "memory://fake"


@dataclass
class _Stored:
    """One request as the engine keeps it: what the client sees, plus the order it ran."""

    request: Request
    order: dict[str, Any] | None


@dataclass
class _Customer:
    customer: Customer
    name: str | None  # as the seed gave it (None: unnamed), for export
    users: list[User] = field(default_factory=list)


class FakePlatform:
    """A platform held in memory: `FakePlatform.from_seed(path)` or `FakePlatform(seed_doc)`."""

    def __init__(self, doc: dict[str, Any], url: str = URL) -> None:
        self.url = url
        self._lock = threading.RLock()  # apply submits from several threads, as against SqlitePlatform
        self._locations = [{"id": x["id"], "name": x.get("name")} for x in doc.get("locations") or []]
        self._services = [{"id": x["id"], "name": x.get("name"), "properties": copy.deepcopy(x.get("properties") or {})}
                          for x in doc.get("services") or []]
        self._customers: dict[str, _Customer] = {}
        for c in doc.get("customers") or []:
            self._customers[c["id"]] = _Customer(Customer.from_json(c), c.get("name"),
                                                 [User.from_json(u) for u in c.get("users") or []])
        self._requests: dict[str, _Stored] = {}  # in submission order (dicts keep insertion order)
        for r in doc.get("requests") or []:
            self._requests[r["id"]] = _Stored(Request.from_json(r), copy.deepcopy(r.get("order")))

    @classmethod
    def from_seed(cls, path: str | Path, url: str = URL) -> FakePlatform:
        """Read and check a seed file as `platform init` does (reconciler.seed), then hold it in memory."""
        return cls(seeds.read(str(path)).doc, url)

    # -- reads -------------------------------------------------------------------------------
    def catalog(self) -> dict[str, Service]:
        with self._lock:
            return {s["id"]: Service(s["id"], s["name"] or s["id"],
                                     {n: PropertyDef(n, p["type"], bool(p.get("sensitive", False)))
                                      for n, p in s["properties"].items()})
                    for s in self._services}

    def customers(self, ids: Iterable[str]) -> dict[str, Customer]:
        with self._lock:
            return {i: copy.deepcopy(self._customers[i].customer) for i in ids if i in self._customers}

    def users(self, customers: Collection[str]) -> dict[str, list[User]]:
        with self._lock:
            out: dict[str, list[User]] = {}
            for cid in customers:
                held = self._customers.get(cid)
                out[cid] = [_sorted_user(u) for u in held.users] if held else []
            return out

    def usage(self, resellers: Collection[str]) -> dict[str, dict[str, int]]:
        with self._lock:
            out: dict[str, dict[str, int]] = {r: {} for r in resellers}
            for held in self._customers.values():
                parent = held.customer.parent
                if parent is None or parent not in out:
                    continue
                for u in held.users:
                    for svc in u.services:
                        out[parent][svc] = out[parent].get(svc, 0) + 1
            return out

    def requests_of(self, customers: Collection[str], pending_only: bool = False) -> dict[str, list[Request]]:
        with self._lock:
            wanted = set(customers)
            out: dict[str, list[Request]] = {}
            for stored in self._requests.values():
                r = stored.request
                if r.customer in wanted and (not pending_only or r.status in PENDING):
                    out.setdefault(r.customer, []).append(copy.deepcopy(r))
            return out

    def request(self, request_id: str) -> Request | None:
        with self._lock:
            stored = self._requests.get(request_id)
            return copy.deepcopy(stored.request) if stored else None

    def search(self, text: str, limit: int = 3) -> list[str]:
        # The embedded platform's candidates: same first two characters or containing the text, as SQL
        # LIKE matches them (ASCII case-insensitive); then difflib ranks them.
        head, inner = text[:2].lower(), text.lower()
        ids = [i for i in self._customers if i.lower().startswith(head) or inner in i.lower()][:5000]
        return difflib.get_close_matches(text, ids, n=limit, cutoff=0.6)

    def close(self) -> None:
        pass

    # -- the engine --------------------------------------------------------------------------
    def submit(self, request_id: str, order: MoveOrder) -> Request:
        """A known id returns the existing request; else run the order now, all or nothing."""
        with self._lock:
            existing = self._requests.get(request_id)
            if existing is not None:
                return copy.deepcopy(existing.request)
            held = self._customers.get(order.customer)
            subs = 1 + len(order.subscriptions) + (len(held.users) if held else 0)
            base = Request(request_id, "CustomerMove", order.customer, "InProgress", submitted_at=utcnow())
            problems, failed = self._refusals(order)
            if problems:
                done = Request(base.id, base.type, base.customer, "Failed", "; ".join(problems), subs, failed,
                               base.submitted_at, utcnow())
            else:
                replaced = self._move(order)
                done = Request(base.id, base.type, base.customer, "Provisioned", None, subs, 0, base.submitted_at,
                               utcnow(), replaced)
            # Stored through JSON, as the database stores the body: the same value, no shared references.
            self._requests[request_id] = _Stored(done, json.loads(json.dumps(order.to_json())))
            return copy.deepcopy(done)

    def _refusals(self, order: MoveOrder) -> tuple[list[str], int]:
        held, to = self._customers.get(order.customer), self._customers.get(order.to_reseller)
        on_hold = [(u.id, u.hold) for u in held.users if u.hold is not None] if held is not None else []
        return refusals(order, held.customer if held else None, to.customer if to else None, on_hold)

    def _move(self, order: MoveOrder) -> dict[str, Any]:
        """Re-parent the customer, set its subscriptions, map its users' SALs; returns what it replaced."""
        held = self._customers[order.customer]
        c = held.customer
        replaced: dict[str, Any] = {"parent": c.parent,
                                    "subscriptions": {s: x.to_json() for s, x in c.subscriptions.items()},
                                    "users": {}}
        subs = {s: Subscription(x.plan, x.sal, dict(x.overrides)) for s, x in order.subscriptions.items()}
        held.customer = Customer(c.id, c.name, c.location, order.to_reseller, c.offerings, subs)
        for service, mapping in order.sal_map.items():
            for u in held.users:
                us = u.services.get(service)
                if us is not None and us.sal in mapping and mapping[us.sal] != us.sal:
                    replaced["users"].setdefault(u.id, {})[service] = us.sal
                    us.sal = mapping[us.sal]
        return replaced

    # -- export ------------------------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        with self._lock:
            doc: dict[str, Any] = {"apiVersion": "reconciler/v1", "kind": "Platform",
                                   "locations": copy.deepcopy(self._locations),
                                   "services": copy.deepcopy(self._services)}
            customers = []
            for held in self._customers.values():
                c = held.customer.to_json()
                c["name"] = held.name
                c["users"] = [_sorted_user(u).to_json() for u in held.users]
                customers.append(c)
            doc["customers"] = customers
            requests = []
            for stored in self._requests.values():
                d = stored.request.to_json()
                if stored.order is not None:
                    d["order"] = copy.deepcopy(stored.order)
                if stored.request.replaced is not None:
                    d["replaced"] = copy.deepcopy(stored.request.replaced)
                requests.append(d)
            doc["requests"] = requests
            return doc


def _sorted_user(u: User) -> User:
    """A copy with its services by id, the order the embedded platform reads them in."""
    return User.from_json(u.to_json())


def provider(url: str, options: dict[str, Any]) -> FakePlatform:
    """A Factory, so a test can hand the fake wherever a provider goes: options["seed"] names the seed."""
    return FakePlatform.from_seed(str(options["seed"]), url)
