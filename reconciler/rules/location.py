"""Moves never cross locations, and the operator confirms the customer's location."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from reconciler.diagnostics import Diagnostic

if TYPE_CHECKING:
    from reconciler.rules import Context


def check(ctx: Context) -> Iterator[Diagnostic]:
    assert ctx.customer is not None and ctx.dest is not None
    said = ctx.move.spec.location
    cust, dest = ctx.customer.location, ctx.dest.location
    if said == cust == dest:
        return
    if cust != dest:
        msg = (f"{ctx.customer.id!r} is in {cust!r} but {ctx.dest.id!r} is in {dest!r}; "
               "a customer can be moved only to a reseller in the same location")
    else:
        msg = f"spec.location is {said!r} but {ctx.customer.id!r} and {ctx.dest.id!r} are in {cust!r}"
    yield ctx.diag("location-mismatch", msg, ("spec", "location"))
