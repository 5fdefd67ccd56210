"""The destination's maxUsers per service holds after the incoming users arrive."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from reconciler.diagnostics import Diagnostic

if TYPE_CHECKING:
    from reconciler.rules import Context


def check(ctx: Context) -> Iterator[Diagnostic]:
    assert ctx.customer is not None and ctx.dest is not None
    if ctx.customer.parent == ctx.dest.id:
        return  # its users already count there
    for svc, r in ctx.resolutions.items():
        incoming = ctx.holders.get(svc, 0)
        if r.offering is None or r.offering.max_users is None or incoming == 0:
            continue
        have = ctx.dest_usage.get(svc, 0)
        if have + incoming > r.offering.max_users:
            yield ctx.diag(
                "capacity-exceeded",
                f"{ctx.dest.id!r} allows {r.offering.max_users} users of {svc!r}; it has {have} and this move "
                f"brings {incoming} more ({have + incoming})", ("spec", "toReseller"))
