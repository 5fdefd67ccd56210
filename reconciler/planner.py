"""Pure planning: (moves, platform snapshot, state records) -> Plan. No I/O, no clock."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from reconciler import rules
from reconciler.diagnostics import Diagnostic
from reconciler.manifests import Move
from reconciler.mapping import ServiceResolution, resolve, sals_in_use
from reconciler.model import (
    PENDING,
    SENSITIVE,
    Customer,
    MoveOrder,
    Props,
    Request,
    Service,
    User,
    UserService,
    conceal,
    customer_fingerprint,
    effective,
    secrets_of,
    sha256_of,
)
from reconciler.state import MoveRecord

Action = Literal["move", "noop", "invalid"]


@dataclass
class Snapshot:
    """The part of the platform a batch touches, read once by the app."""

    catalog: dict[str, Service]
    customers: Mapping[str, Customer]  # moved customers, their parents, the destinations
    users: Callable[[str], Iterable[User]]  # streamed per customer
    usage: Callable[[str], dict[str, int]]  # reseller -> service -> users of its direct customers
    requests: Mapping[str, list[Request]]  # customer -> its requests on the platform, in submission order
    _fingerprints: dict[str, tuple[Customer, str]] = field(default_factory=dict, repr=False, compare=False)
    _secret: dict[str, set[str]] | None = field(default=None, repr=False, compare=False)
    _offered: dict[tuple[str, tuple[str, ...]], str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def secret(self) -> dict[str, set[str]]:
        """Per service, its sensitive property names (from the catalog, worked out once)."""
        if self._secret is None:
            self._secret = secrets_of(self.catalog)
        return self._secret

    def pending(self, customer: str) -> list[str]:
        return [r.id for r in self.requests.get(customer, ()) if r.status in PENDING]

    def fingerprint(self, customer: Customer) -> str:
        """The drift fingerprint of a customer as this snapshot shows it (its parent is in the snapshot)."""
        hit = self._fingerprints.get(customer.id)
        if hit is not None and hit[0] is customer:  # the very object (the view makes new ones for moved customers)
            return hit[1]
        parent = self.customers.get(customer.parent) if customer.parent else None
        fp = customer_fingerprint(customer, parent, self.secret, self._offered)
        self._fingerprints[customer.id] = (customer, fp)
        return fp


@dataclass
class Change:
    services: list[dict[str, Any]]
    users: list[dict[str, Any]]
    order: MoveOrder
    holders: dict[str, int]
    needed: bool


@dataclass
class PlannedMove:
    move: Move
    customer: str
    from_reseller: str | None
    to_reseller: str
    action: Action
    reason: str | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    order: MoveOrder | None = None
    request_id: str | None = None
    start: str | None = None  # the starting point its request id was derived from (`starting_point`)
    user_count: int = 0
    customer_fingerprint: str | None = None

    @property
    def name(self) -> str:
        return self.move.name

    @property
    def requests(self) -> list[dict[str, Any]]:
        if self.action != "move" or self.order is None:
            return []
        return [{"id": self.request_id, "type": "CustomerMove", "customer": self.customer,
                 "sub_requests": 1 + len(self.order.subscriptions) + self.user_count}]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "file": self.move.file, "line": self.move.line,
            "manifest_sha256": self.move.digest, "customer": self.customer,
            "from_reseller": self.from_reseller, "to_reseller": self.to_reseller,
            "location": self.move.location, "allow_large": self.move.allow_large,
            "action": self.action, "reason": self.reason,
            "diagnostics": [d.to_json() for d in self.diagnostics],
            "services": self.services, "users": self.users, "requests": self.requests,
        }


@dataclass
class Plan:
    moves: list[PlannedMove]
    diagnostics: list[Diagnostic]

    def all_diagnostics(self) -> Iterator[Diagnostic]:
        yield from self.diagnostics
        for m in self.moves:
            yield from m.diagnostics

    @property
    def applyable(self) -> bool:
        return not any(d.is_error for d in self.all_diagnostics())

    @property
    def changes(self) -> bool:
        return any(m.action == "move" for m in self.moves)

    def summary(self) -> dict[str, int]:
        diags = list(self.all_diagnostics())
        moving = [m for m in self.moves if m.action == "move"]
        return {
            "moves": len(moving),
            "noop": sum(1 for m in self.moves if m.action == "noop"),
            "invalid": sum(1 for m in self.moves if m.action == "invalid"),
            "users_changed": sum(len(m.users) for m in moving),
            "requests": sum(len(m.requests) for m in moving),
            "errors": sum(1 for d in diags if d.is_error),
            "warnings": sum(1 for d in diags if not d.is_error),
        }


def request_id(name: str, digest: str, attempt: int, start: str) -> str:
    """Deterministic: the same move, manifest, attempt and starting point always get the same request id.

    The starting point (`starting_point`) makes an id never match a request made for another starting
    point of the customer: a move applied, moved back and applied again gets a new request."""
    return "rq-" + hashlib.sha256(f"{name}\n{digest}\n{attempt}\n{start}".encode()).hexdigest()[:24]


def starting_point(cust: Customer, change: Change, history: Sequence[Request]) -> str:
    """Where the customer starts, as read from the platform: its reseller, what the move changes for it, and
    the last request the platform ran for it (so a customer moved away and back starts somewhere new)."""
    return sha256_of({"from": cust.parent, "last_request": history[-1].id if history else None,
                      "order": change.order.to_json(), "services": change.services,
                      "users": [len(change.users), sum(len(u["services"]) for u in change.users)]})


class View:
    """The platform as the valid moves before this one in the batch have changed it."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.changed: dict[str, Customer] = {}
        self.sal_maps: dict[str, list[dict[str, dict[str, str]]]] = {}
        self.usage_delta: dict[str, Counter[str]] = {}
        self._usage: dict[str, dict[str, int]] = {}

    def customer(self, cid: str) -> Customer | None:
        return self.changed.get(cid) or self.snap.customers.get(cid)

    def users(self, cid: str) -> Iterable[User]:
        maps = self.sal_maps.get(cid)
        if not maps:  # the customer as read: no copy
            return self.snap.users(cid)
        return self._mapped(cid, maps)

    def _mapped(self, cid: str, maps: list[dict[str, dict[str, str]]]) -> Iterator[User]:
        for u in self.snap.users(cid):
            for m in maps:
                u = replace(u, services={s: replace(us, sal=m.get(s, {}).get(us.sal, us.sal))
                                         for s, us in u.services.items()})
            yield u

    def usage(self, reseller: str) -> dict[str, int]:
        if reseller not in self._usage:
            self._usage[reseller] = dict(self.snap.usage(reseller))
        out = dict(self._usage[reseller])
        for svc, n in self.usage_delta.get(reseller, Counter()).items():
            out[svc] = out.get(svc, 0) + n
        return out

    def apply(self, cust: Customer, change: Change) -> None:
        order = change.order
        if cust.parent != order.to_reseller:
            for svc, n in change.holders.items():
                self.usage_delta.setdefault(order.to_reseller, Counter())[svc] += n
                if cust.parent is not None:
                    self.usage_delta.setdefault(cust.parent, Counter())[svc] -= n
        self.changed[cust.id] = replace(cust, parent=order.to_reseller, subscriptions=dict(order.subscriptions))
        self.sal_maps.setdefault(cust.id, []).append(order.sal_map)


@dataclass
class Evaluation:
    diagnostics: list[Diagnostic]
    change: Change | None
    user_count: int = 0


def evaluate(move: Move, view: View, own_request: str | None = None) -> Evaluation:
    """Every rule, then the diff: the whole meaning of one move."""
    spec = move.spec
    cust, dest = view.customer(spec.customer), view.customer(spec.to_reseller)
    ctx = rules.Context(move=move, customer=cust, dest=dest, catalog=view.snap.catalog)
    diags = rules.resolve(ctx)
    if diags or cust is None or dest is None:
        return Evaluation(diags, None)
    users = list(view.users(cust.id))
    ctx.resolutions = resolve(cust, dest, dict(spec.services), sals_in_use(cust, users))
    ctx.holders = dict(Counter(s for u in users for s in u.services))
    ctx.dest_usage = view.usage(dest.id)
    ctx.pending = [r for r in view.snap.pending(cust.id) if r != own_request]
    diags = rules.check(ctx)
    if any(d.is_error for d in diags):
        return Evaluation(diags, None, len(users))
    source = view.customer(cust.parent) if cust.parent else None
    return Evaluation(diags, diff(cust, source, dest, ctx.resolutions, users, view.snap.secret, ctx.holders),
                      len(users))


def diff(cust: Customer, source: Customer | None, dest: Customer, res: dict[str, ServiceResolution],
         users: Sequence[User], secret: Mapping[str, set[str]], holders: dict[str, int]) -> Change:
    """What changes for the customer's services and for every user (plain comparisons: this is hot)."""
    src_offers = (source.offerings or {}) if source else {}
    dst_offers = dest.offerings or {}
    services, needed = [], cust.parent != dest.id
    for svc, r in res.items():
        new = r.new_subscription()
        names = secret.get(svc, set())
        overrides = _changed(r.current.overrides, new.overrides, names)
        needed = needed or (new.plan, new.sal) != (r.current.plan, r.current.sal) or bool(overrides)
        services.append({
            "service": svc,
            "plan": {"from": r.current.plan, "to": r.plan_to},
            "sal_mappings": [{"from": m.source_sal, "to": m.to, "source": m.source} for m in r.mappings.values()],
            "customer_properties": overrides,
        })
    user_changes: list[dict[str, Any]] = []
    # A user's change of a service depends only on its SAL and its own overrides: without overrides it is
    # computed once per (service, SAL), with them once per UserService object (a platform read shares one
    # among users holding the same; the cache holds each one, so its id is never reused meanwhile). The
    # same entry (read-only from here on) serves every such user: a 50,000-user customer costs a dict lookup
    # per user service.
    common: dict[str, dict[str | int, tuple[UserService, dict[str, Any] | None]]] = {}  # service -> key -> entry

    def entry(svc: str, sr: ServiceResolution, us: UserService) -> dict[str, Any] | None:
        nonlocal needed
        to_sal = sr.target(us.sal)
        src = src_offers.get(svc)
        names = secret.get(svc, set())
        props = _changed(effective(src.sals.get(us.sal) if src else None, sr.current.overrides, us.overrides),
                         effective(dst_offers[svc].sals.get(to_sal), sr.new_overrides, us.overrides), names)
        if not props and to_sal == us.sal:
            return None
        needed = needed or to_sal != us.sal
        return {"service": svc, "sal": {"from": us.sal, "to": to_sal}, "properties": props}

    add = user_changes.append
    for u in users:
        entries = []
        for svc, us in u.services.items():
            known = common.get(svc)
            if known is None:
                known = common[svc] = {}
            key = id(us) if us.overrides else us.sal  # an int and a str never clash
            hit = known.get(key)
            if hit is not None:
                e = hit[1]
            else:  # None for a service the customer does not subscribe to: left as it is
                sr = res.get(svc)
                e = entry(svc, sr, us) if sr is not None else None
                known[key] = (us, e)  # the UserService held: its id is not reused while the cache lives
            if e is not None:
                entries.append(e)
        if entries:
            add({"user": u.id, "services": entries})
    user_changes.sort(key=lambda x: str(x["user"]))
    order = MoveOrder(customer=cust.id, to_reseller=dest.id,
                      subscriptions={svc: r.new_subscription() for svc, r in res.items()},
                      sal_map={svc: r.sal_map for svc, r in res.items()})
    return Change(services, user_changes, order, holders, needed)


def _changed(before: Props, after: Props, secret: set[str] | frozenset[str]) -> dict[str, Any]:
    """The properties that differ, as JSON does: 2 and 2.0 differ (an integer property is not a number one).
    A sensitive value is compared through its concealed form (the read-only token of a platform sees only
    that) and shown as SENSITIVE. Equal raw values are equal concealed, so only a difference is concealed."""
    if before == after and all(type(v) is type(after[k]) and not (type(v) is float and k in secret)
                               for k, v in before.items()):
        return {}
    out: dict[str, Any] = {}
    for k in sorted(before.keys() | after.keys()):
        a, b = before.get(k), after.get(k)
        if a == b and type(a) is type(b) and not (type(a) is float and k in secret):
            continue
        if k in secret:  # -0.0 == 0.0, yet their JSON (and so their concealed forms) differ
            if conceal(a) == conceal(b):
                continue
            a, b = (None if a is None else SENSITIVE), (None if b is None else SENSITIVE)
        out[k] = {"from": a, "to": b}
    return out


def standing(name: str, digest: str, rec: MoveRecord | None,
             latest_done: Mapping[str, tuple[int, str]]) -> str | None:
    """What the state says of a manifest: None (no finished record), "changed" (finished from other bytes),
    "superseded" (a later move of the customer finished since) or "applied" (the customer's standing move)."""
    if rec is None or not rec.done:
        return None
    if rec.manifest.sha256 != digest:
        return "changed"
    if latest_done.get(rec.customer, (0, name))[1] != name:
        return "superseded"
    return "applied"


MoveCheck = Callable[["PlannedMove"], list[Diagnostic]]  # more errors for a move that would change the platform


def plan(moves: Sequence[Move], snap: Snapshot, records: Mapping[str, MoveRecord],
         latest_done: Mapping[str, tuple[int, str]], diagnostics: Sequence[Diagnostic] = (),
         check: MoveCheck | None = None) -> Plan:
    """Plan every move in order against the platform as the valid moves before it change it. `check` (the
    policy's) may refuse a move that would change the platform: it is invalid, and later moves do not count it
    (capacity, duplicates)."""
    view = View(snap)
    state_says = {m.name: said for m in moves
                  if (said := standing(m.name, m.digest, records.get(m.name), latest_done)) is not None}
    duplicated = _duplicated(moves, state_says, View(snap))
    out: list[PlannedMove] = []
    for m in moves:
        cust = view.customer(m.customer)
        pm = PlannedMove(move=m, customer=m.customer, from_reseller=cust.parent if cust else None,
                         to_reseller=m.to_reseller, action="noop",
                         customer_fingerprint=snap.fingerprint(cust) if cust else None)
        out.append(pm)
        said = state_says.get(m.name)
        rec = records.get(m.name)
        if said == "changed":
            assert rec is not None
            pm.action = "invalid"
            pm.diagnostics = [m.locate(Diagnostic(
                code="manifest-changed-after-apply",
                message=f"{m.name!r} was {rec.status} from a different manifest (sha256 {rec.manifest.sha256[:12]}…); "
                        "an applied move is history: restore the manifest, or write a new move with a new name",
                path="$"), ())]
        elif said == "superseded":
            assert rec is not None
            pm.reason, pm.from_reseller = "superseded", rec.from_reseller
        elif said == "applied":
            assert rec is not None
            pm.reason, pm.from_reseller = "applied", rec.from_reseller
            # Judged against the platform before the run: a new move of the customer earlier in the
            # batch is exactly what the drift warning would ask for, not drift.
            before = snap.customers.get(m.customer)
            if not (before is not None and rec.customer_fingerprint == snap.fingerprint(before)):
                ev = evaluate(m, View(snap))
                if any(d.is_error for d in ev.diagnostics) or (ev.change is not None and ev.change.needed):
                    pm.reason = "drifted"
                    pm.diagnostics = [m.locate(Diagnostic(
                        code="drift", severity="warning", path="$",
                        message=f"{m.customer!r} no longer matches {m.name!r} on the platform; it is not moved "
                                "back silently: write a new move to move it again"), ())]
        elif m.customer in duplicated:
            others = ", ".join(f"{o.name} ({o.file})" for o in duplicated[m.customer] if o is not m)
            pm.action = "invalid"
            pm.diagnostics = [m.locate(Diagnostic(
                code="duplicate-move", path="$.spec.customer",
                message=f"{m.customer!r} is also moved by {others}; keep one move per customer"),
                ("spec", "customer"))]
        else:
            own = _resumable(rec, m.digest)
            ev = evaluate(m, view, own)
            pm.diagnostics = ev.diagnostics
            pm.user_count = ev.user_count
            if any(d.is_error for d in ev.diagnostics):
                pm.action = "invalid"
            elif ev.change is None or not ev.change.needed:
                pm.reason = "already-at-destination"
                pm.diagnostics = [d for d in ev.diagnostics if d.code != "sal-unused"]
                if ev.change is not None:
                    pm.order = ev.change.order
            else:
                assert cust is not None
                pm.action = "move"
                pm.services, pm.users, pm.order = ev.change.services, ev.change.users, ev.change.order
                refused = check(pm) if check is not None else []
                if refused:
                    pm.action, pm.diagnostics = "invalid", [*pm.diagnostics, *refused]
                    pm.services, pm.users, pm.order = [], [], None
                    continue
                attempt = len(rec.requests) + 1 if rec is not None else 1
                pm.start = starting_point(cust, ev.change, snap.requests.get(cust.id, ()))
                pm.request_id = own or request_id(m.name, m.digest, attempt, pm.start)
                view.apply(cust, ev.change)
    return Plan(out, list(diagnostics))


def differences(move: Move, snap: Snapshot) -> list[dict[str, Any]]:
    """How the platform differs from what the applied `move` set: [] when re-planning it would change nothing
    (a user's SAL changed within the destination's offering is the platform's own business, not drift)."""
    cust = snap.customers.get(move.customer)
    if cust is None:
        return [{"path": "customer", "platform": None, "expected": move.customer}]
    out: list[dict[str, Any]] = []
    if cust.parent != move.to_reseller:
        out.append({"path": "parent", "platform": cust.parent, "expected": move.to_reseller})
    ev = evaluate(move, View(snap))
    for d in ev.diagnostics:
        if d.is_error:
            out.append({"path": d.path or "$", "platform": d.message, "expected": None})
    if ev.change is None:  # a rule no longer holds: what it says is the difference
        return out
    if not ev.change.needed:
        return []
    for s in ev.change.services:
        svc = s["service"]
        if s["plan"]["from"] != s["plan"]["to"]:
            out.append({"path": f"services.{svc}.plan", "platform": s["plan"]["from"], "expected": s["plan"]["to"]})
        sub = cust.subscriptions.get(svc)
        want = ev.change.order.subscriptions.get(svc)
        if sub is not None and want is not None and sub.sal != want.sal:
            out.append({"path": f"services.{svc}.sal", "platform": sub.sal, "expected": want.sal})
        for k, ch in s["customer_properties"].items():
            out.append({"path": f"services.{svc}.properties.{k}", "platform": ch["from"], "expected": ch["to"]})
    for u in ev.change.users:
        for us in u["services"]:
            if us["sal"]["from"] != us["sal"]["to"]:  # a SAL the destination does not map to itself
                out.append({"path": f"users.{u['user']}.{us['service']}.sal", "platform": us["sal"]["from"],
                            "expected": us["sal"]["to"]})
    return out


def _resumable(rec: MoveRecord | None, digest: str) -> str | None:
    """The request id to resume: the record's last request, journaled but never finished."""
    if rec is None or rec.status != "in-progress" or rec.manifest.sha256 != digest:
        return None
    last = rec.last_request
    return last.id if last is not None and last.status in PENDING else None


def _duplicated(moves: Sequence[Move], state_says: Mapping[str, str], before: View) -> dict[str, list[Move]]:
    """Customers moved by two or more moves that still need changes, judged before the run."""
    by_customer: dict[str, list[Move]] = {}
    for m in moves:
        if m.name in state_says:
            continue
        cust = before.customer(m.customer)
        if cust is None:
            continue
        if cust.parent == m.to_reseller:
            ev = evaluate(m, before)
            if ev.change is None or not ev.change.needed:
                continue
        by_customer.setdefault(cust.id, []).append(m)
    return {c: ms for c, ms in by_customer.items() if len(ms) > 1}
