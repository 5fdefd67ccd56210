"""`new-move`: a ready manifest with the detected plan and SAL mappings written out."""

from __future__ import annotations

import json
import re

from reconciler.config import Settings
from reconciler.errors import ReconcilerError
from reconciler.mapping import resolve, sals_in_use
from reconciler.platforms import open_platform
from reconciler.platforms.base import Platform
from reconciler.render import clean
from reconciler.yamlsafe import reads_as_text


def yaml_scalar(v: str) -> str:
    """Plain where YAML reads it back as the same string; double-quoted otherwise, with every control
    character escaped (a JSON string is a valid YAML double-quoted scalar)."""
    if reads_as_text(v) and not v.startswith(("&", "*", "!", "%", "@", "`")):
        return v
    return json.dumps(v)


ID_HINT = "ids are exact and case-sensitive; `reconcile platform export` lists the platform's customers and resellers"


def did_you_mean(platform: Platform, wanted: str) -> str:
    """`; did you mean 'acme'?` when the platform has ids like it (one search call), else nothing."""
    found = [x for x in platform.search(wanted, 3) if x != wanted]
    if not found:
        return ""
    quoted = [repr(x) for x in found]
    return f"; did you mean {quoted[0] if len(quoted) == 1 else ', '.join(quoted[:-1]) + ' or ' + quoted[-1]}?"


def move_name(customer: str, reseller: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", f"{customer}-to-{reseller}".lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)[:63].rstrip("-")
    return name or "move"


def render(settings: Settings, customer: str, reseller: str) -> str:
    platform = open_platform(settings.platform_url, settings.platform_options)
    try:
        found = platform.customers([customer, reseller])
        cust, dest = found.get(customer), found.get(reseller)
        if cust is None:
            raise ReconcilerError(f"customer {customer!r} does not exist on the platform"
                                  f"{did_you_mean(platform, customer)}", hint=ID_HINT)
        if dest is None:
            raise ReconcilerError(f"reseller {reseller!r} does not exist on the platform"
                                  f"{did_you_mean(platform, reseller)}", hint=ID_HINT)
        if not dest.is_reseller:
            raise ReconcilerError(f"{reseller!r} is not a reseller; a customer can only move to a reseller")
        if cust.is_reseller:
            raise ReconcilerError(f"{customer!r} is a reseller; a reseller customer cannot be moved")
        if cust.parent == dest.id:
            raise ReconcilerError(f"{customer!r} is already a customer of {reseller!r}: there is nothing to move",
                                  hint="name the reseller the customer should move to")
        if cust.location != dest.location:
            raise ReconcilerError(f"{reseller!r} is in location {dest.location!r} and {customer!r} in "
                                  f"{cust.location!r}: a customer moves only to a reseller in its own location",
                                  hint=f"choose a reseller in {cust.location!r}")
        res = resolve(cust, dest, {}, sals_in_use(cust, platform.users([cust.id]).get(cust.id, [])))
    finally:
        platform.close()
    s = yaml_scalar
    lines = [
        f"# {clean(customer)} from {clean(cust.parent)} to {clean(reseller)}: written by `reconcile new-move`.",
        "# Review every mapping, fill in the ones left as comments, then `reconcile plan` it.",
        "apiVersion: reconciler/v1", "kind: CustomerMove", "metadata:",
        f"  name: {s(move_name(customer, reseller))}",
        "  # ticket: CHG-0000", "  # description: why the customer moves", "spec:",
        f"  customer: {s(customer)}", f"  toReseller: {s(reseller)}", f"  location: {s(cust.location)}",
    ]
    if res:
        lines.append("  services:")
    for svc, r in res.items():
        if r.offering is None:
            lines.append(f"    # WARNING: {clean(reseller)} does not offer {clean(svc)}: this move cannot be planned")
            lines.append(f"    {s(svc)}: {{}}")
            continue
        lines.append(f"    {s(svc)}:")
        choices = ", ".join(clean(p) for p in r.offering.plans) or "none"
        if r.plan_known:
            lines.append(f"      plan: {s(r.plan_to)}")
        else:
            lines.append(f"      # plan: {clean(r.current.plan)} is not offered here; choose one of: {choices}")
        mapped = [m for m in r.mappings.values()]
        if mapped:
            lines.append("      sals:")
        offered = ", ".join(clean(x) for x in r.offering.sals) or "none"
        for m in mapped:
            if m.to is None:
                lines.append(f"        # {clean(m.source_sal)}: choose one of: {offered}")
            else:
                lines.append(f"        {s(m.source_sal)}: {s(m.to)}")
    return "\n".join(lines) + "\n"
