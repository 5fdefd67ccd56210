"""Services, plans, SALs and property overrides: what the destination offers and the catalog allows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from reconciler.diagnostics import Diagnostic
from reconciler.schema import kind_of, short

if TYPE_CHECKING:
    from reconciler.rules import Context


def check(ctx: Context) -> Iterator[Diagnostic]:
    assert ctx.customer is not None and ctx.dest is not None
    spec = ctx.move.spec
    for svc in spec.services:
        if svc not in ctx.customer.subscriptions:
            yield ctx.diag("service-not-subscribed",
                           f"{ctx.customer.id!r} does not have service {svc!r}; remove it from spec.services",
                           ("spec", "services", svc), at_key=True)
    for svc, r in ctx.resolutions.items():
        base = ("spec", "services", svc)
        if r.offering is None:
            yield ctx.diag("service-not-offered",
                           f"{ctx.dest.id!r} does not offer {svc!r}, which {ctx.customer.id!r} has; "
                           "the destination must offer every service of the customer", ("spec", "toReseller"))
            continue
        plans = ", ".join(r.offering.plans) or "none"
        if r.plan_explicit and not r.plan_known:
            yield ctx.diag("plan-unknown", f"{ctx.dest.id!r} does not offer plan {r.plan_to!r} of {svc!r} "
                           f"(it offers: {plans})", (*base, "plan"))
        elif not r.plan_known:
            yield ctx.diag("plan-unmatched", f"{ctx.dest.id!r} does not offer plan {r.plan_to!r} of {svc!r}; "
                           f"set spec.services.{svc}.plan to one of: {plans}", base)
        offered = ", ".join(r.offering.sals) or "none"
        for sal, to in r.spec.sals.items():
            if to not in r.offering.sals:
                yield ctx.diag("sal-unknown", f"{ctx.dest.id!r} does not offer SAL {to!r} of {svc!r} "
                               f"(it offers: {offered})", (*base, "sals", sal))
            if sal not in r.in_use:
                yield ctx.diag("sal-unused", f"SAL {sal!r} of {svc!r} is not in use by {ctx.customer.id!r} "
                               "or its users; the mapping does nothing", (*base, "sals", sal),
                               warning=True, at_key=True)
        for m in r.mappings.values():
            if m.to is None:
                yield ctx.diag("sal-unmatched", f"SAL {m.source_sal!r} of {svc!r} is in use and {ctx.dest.id!r} "
                               f"has no SAL of that id; map it under spec.services.{svc}.sals to one of: "
                               f"{offered}", base if svc in spec.services else ("spec", "toReseller"))
        defs = ctx.catalog[svc].properties if svc in ctx.catalog else {}
        for name, value in r.spec.properties.items():
            pd = defs.get(name)
            path = (*base, "properties", name)
            if pd is None:
                known = ", ".join(defs) or "none"
                yield ctx.diag("property-unknown", f"{svc!r} has no property {name!r} (it has: {known})",
                               path, at_key=True)
            elif not pd.accepts(value):
                shown = kind_of(value) if pd.sensitive else short(value)
                yield ctx.diag("property-type", f"property {name!r} of {svc!r} is {pd.type}; got {shown}", path)
