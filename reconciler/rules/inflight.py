"""A customer with unfinished provisioning is not moved until that finishes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from reconciler.diagnostics import Diagnostic

if TYPE_CHECKING:
    from reconciler.rules import Context


def check(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.pending:
        ids = ", ".join(ctx.pending[:5]) + (f" and {len(ctx.pending) - 5} more" if len(ctx.pending) > 5 else "")
        yield ctx.diag("provisioning-in-flight",
                       f"{ctx.move.spec.customer!r} has provisioning requests still running ({ids}); "
                       "wait for them to finish, then plan again", ("spec", "customer"))
