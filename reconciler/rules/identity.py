"""The customer and the destination exist and are of the right kind."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from reconciler.diagnostics import Diagnostic

if TYPE_CHECKING:
    from reconciler.rules import Context


def check(ctx: Context) -> Iterator[Diagnostic]:
    spec = ctx.move.spec
    if ctx.customer is None:
        yield ctx.diag("customer-not-found", f"customer {spec.customer!r} does not exist on the platform",
                       ("spec", "customer"))
    elif ctx.customer.is_reseller:
        yield ctx.diag("reseller-cannot-move",
                       f"{spec.customer!r} is a reseller; a reseller customer cannot be moved "
                       "(move its customers one by one instead)", ("spec", "customer"))
    if ctx.dest is None:
        yield ctx.diag("reseller-not-found", f"reseller {spec.to_reseller!r} does not exist on the platform",
                       ("spec", "toReseller"))
    elif not ctx.dest.is_reseller:
        yield ctx.diag("not-a-reseller", f"{spec.to_reseller!r} is a customer, not a reseller; "
                       "a customer can only be moved to a reseller", ("spec", "toReseller"))
