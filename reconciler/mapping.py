"""Resolve what a move means per service: destination plan, SAL mapping, new customer overrides."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from reconciler.model import Customer, Offering, Props, Subscription, User

if TYPE_CHECKING:  # the pydantic models load when a move's spec is read: a no-op re-plan never reads one
    from reconciler.manifests import ServiceSpec

Source = Literal["explicit", "name"]


@dataclass
class SalMapping:
    source_sal: str
    to: str | None  # None: unmatched
    source: Source | None
    known: bool  # the destination offers `to`


@dataclass
class ServiceResolution:
    """One service of the customer, as the move resolves it against the destination."""

    service: str
    current: Subscription
    offering: Offering | None  # None: the destination does not offer it
    spec: ServiceSpec
    plan_to: str
    plan_explicit: bool
    in_use: list[str] = field(default_factory=list)  # SALs in use: the default first, then users' by first use
    mappings: dict[str, SalMapping] = field(default_factory=dict)
    new_overrides: Props = field(default_factory=dict)

    @property
    def plan_known(self) -> bool:
        return self.offering is not None and self.plan_to in self.offering.plans

    def target(self, sal: str) -> str:
        m = self.mappings.get(sal)
        return m.to if m is not None and m.to is not None else sal

    @property
    def sal_map(self) -> dict[str, str]:
        return {s: m.to for s, m in self.mappings.items() if m.to is not None}

    def new_subscription(self) -> Subscription:
        return Subscription(self.plan_to, self.target(self.current.sal), self.new_overrides)


def sals_in_use(customer: Customer, users: Iterable[User]) -> dict[str, list[str]]:
    """Per service: the customer's default SAL, then each user's SAL in order of first use."""
    seen: dict[str, dict[str, None]] = {s: {sub.sal: None} for s, sub in customer.subscriptions.items()}
    for u in users:
        for svc, us in u.services.items():
            seen.setdefault(svc, {})[us.sal] = None
    return {s: list(d) for s, d in seen.items()}


def resolve(customer: Customer, dest: Customer, services: dict[str, ServiceSpec],
            in_use: dict[str, list[str]]) -> dict[str, ServiceResolution]:
    from reconciler.manifests import ServiceSpec

    out: dict[str, ServiceResolution] = {}
    offerings = dest.offerings or {}
    for svc, current in customer.subscriptions.items():
        spec = services.get(svc) or ServiceSpec()
        offering = offerings.get(svc)
        r = ServiceResolution(
            service=svc, current=current, offering=offering, spec=spec,
            plan_to=spec.plan or current.plan, plan_explicit=spec.plan is not None,
            in_use=in_use.get(svc, [current.sal]),
            new_overrides=_apply_overrides(current.overrides, spec.properties),
        )
        dest_sals = offering.sals if offering else {}
        for sal in r.in_use:
            if sal in spec.sals:
                to = spec.sals[sal]
                r.mappings[sal] = SalMapping(sal, to, "explicit", to in dest_sals)
            elif sal in dest_sals:
                r.mappings[sal] = SalMapping(sal, sal, "name", True)
            else:
                r.mappings[sal] = SalMapping(sal, None, None, False)
        out[svc] = r
    return out


def _apply_overrides(current: Props, changes: dict[str, Any]) -> Props:
    out = dict(current)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out
