"""`revert NAME`: a manifest that moves the customer of an applied move back where it came from.

Built from the platform's own record of what the move's request replaced (previous parent, each
subscription's plan, SAL and overrides, each user's SAL per service); the state never holds a value."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import ReconcilerError
from reconciler.model import Customer, Service, User, secrets_of
from reconciler.newmove import yaml_scalar as scalar
from reconciler.render import clean
from reconciler.state import MoveRecord, State

NAME_MAX = 63


@dataclass
class Revert:
    manifest: str  # the YAML document
    warnings: list[str] = field(default_factory=list)  # also said on stderr: ambiguous SALs, sensitive values


def revert_name(name: str) -> str:
    return name[:NAME_MAX - len("-revert")].rstrip("-") + "-revert"


def check_revertible(name: str, st: State | None) -> MoveRecord:
    """The applied record of `name`, or an error saying why it cannot be reverted."""
    rec = st.moves.get(name) if st else None
    if rec is None:
        raise ReconcilerError(f"no recorded move named {name!r}", hint="`reconcile status` lists every recorded move")
    if rec.status != "applied":
        raise ReconcilerError(f"{name!r} is recorded {rec.status}, not applied: only an applied move can be reverted")
    assert st is not None
    latest = st.latest_done().get(rec.customer)
    if latest is not None and latest[1] != name:
        raise ReconcilerError(f"{rec.customer!r} was moved again since {name!r}, by {latest[1]!r}: revert that "
                              "move first, or write a new move")
    return rec


def build(name: str, rec: MoveRecord, cust: Customer | None, replaced: dict[str, Any] | None,
          users: list[User], catalog: dict[str, Service], allow_large: bool = False) -> Revert:
    """The revert manifest of the applied move `name` whose request replaced `replaced`."""
    if cust is None or cust.parent != rec.to_reseller:
        where = "no longer exists" if cust is None else f"is under {cust.parent}"
        raise ReconcilerError(f"{rec.customer!r} {where}, not under {rec.to_reseller!r} where {name!r} put it: "
                              "there is nothing to revert", hint="`reconcile drift` shows what changed since")
    if not replaced or not replaced.get("parent"):
        raise ReconcilerError(f"the platform keeps no record of what {name!r} replaced (request "
                              f"{rec.last_request.id if rec.last_request else '?'}), so the way back is unknown",
                              hint="write the move back with `reconcile new-move`")
    back_to = str(replaced["parent"])
    out = Revert("")
    secret = secrets_of(catalog)
    old_subs: dict[str, Any] = replaced.get("subscriptions") or {}
    old_sal_of: dict[str, dict[str, str]] = replaced.get("users") or {}
    s = scalar
    lines = [
        f"# Moves {clean(rec.customer)} back from {clean(rec.to_reseller)} to {clean(back_to)}: written by "
        f"`reconcile revert {clean(name)}`",
        "# from the platform's record of what that move replaced. Review it, then `reconcile plan` it.",
        "apiVersion: reconciler/v1", "kind: CustomerMove", "metadata:", f"  name: {s(revert_name(name))}",
        f"  description: {s(f'Reverts {name}')}", "spec:",
        f"  customer: {s(rec.customer)}", f"  toReseller: {s(back_to)}", f"  location: {s(cust.location)}",
    ]
    if allow_large:  # as the move it reverts: the same users change back
        lines.append("  allowLarge: true")
    if cust.subscriptions:
        lines.append("  services:")
    for svc, sub in sorted(cust.subscriptions.items()):
        old = old_subs.get(svc) or {}
        lines.append(f"    {s(svc)}:")
        if old.get("plan"):
            lines.append(f"      plan: {s(str(old['plan']))}")
        # Reverse SAL mappings: each SAL in use now goes back to the one its holders had before the move.
        back: dict[str, Counter[str]] = {}
        if sub.sal:
            back.setdefault(sub.sal, Counter())[str(old.get("sal") or sub.sal)] += 1
        for u in users:
            us = u.services.get(svc)
            if us is None:
                continue
            was = old_sal_of.get(u.id, {}).get(svc, us.sal)
            back.setdefault(us.sal, Counter())[was] += 1
        mapped = []
        for now_sal, olds in sorted(back.items()):
            (to, _), *others = olds.most_common()
            if others:
                rest = ", ".join(f"{o} ({n} user{'s' if n != 1 else ''})" for o, n in others)
                out.warnings.append(f"{svc}: SAL {now_sal} goes back to {to}, which most of its users held; "
                                    f"the others held {rest}")
                mapped.append(f"        # {clean(now_sal)} was also {clean(rest)} before {clean(name)}")
            if to != now_sal:
                mapped.append(f"        {s(now_sal)}: {s(to)}")
        if mapped:
            lines += ["      sals:", *mapped]
        # Customer overrides the move replaced: restored; those it added: removed; sensitive ones: named only.
        before = old.get("overrides") or {}
        props, hidden = [], []
        for k in sorted(set(before) | set(sub.overrides)):
            if k in secret.get(svc, set()):
                if before.get(k) != sub.overrides.get(k) or (k in before) != (k in sub.overrides):
                    hidden.append(k)
                continue
            if k not in before:
                props.append(f"        {s(k)}: null")
            elif k not in sub.overrides or sub.overrides[k] != before[k] or type(sub.overrides[k]) is not type(
                    before[k]):
                props.append(f"        {s(k)}: {_value(before[k])}")
        if props:
            lines += ["      properties:", *props]
        for k in hidden:
            lines.append(f"      # {clean(k)} is sensitive: restore its value on the platform by hand")
            out.warnings.append(f"{svc}: the sensitive property {k} is not written; restore it on the platform")
    out.manifest = "\n".join(lines) + "\n"
    return out


def _value(v: Any) -> str:
    if isinstance(v, str):
        return scalar(v)
    if v is None or isinstance(v, bool):
        return "null" if v is None else ("true" if v else "false")
    if isinstance(v, (int, float)):
        return repr(v)
    import json

    return json.dumps(v)
