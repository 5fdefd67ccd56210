"""The move rules: small modules, one registry, `check()` returns Diagnostics (no cascades)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from reconciler.diagnostics import Diagnostic
from reconciler.manifests import Move
from reconciler.mapping import ServiceResolution
from reconciler.model import Customer, Service
from reconciler.schema import PathTuple, json_path


@dataclass
class Context:
    """Everything the rules may look at for one move, as the batch has changed the platform so far."""

    move: Move
    customer: Customer | None
    dest: Customer | None
    catalog: dict[str, Service]
    resolutions: dict[str, ServiceResolution] = field(default_factory=dict)
    holders: dict[str, int] = field(default_factory=dict)  # service -> users of the customer holding it
    dest_usage: dict[str, int] = field(default_factory=dict)  # service -> users under the destination now
    pending: list[str] = field(default_factory=list)  # the customer's unfinished requests

    def diag(self, code: str, message: str, path: PathTuple, *, warning: bool = False,
             at_key: bool = False) -> Diagnostic:
        d = Diagnostic(code=code, message=message, severity="warning" if warning else "error",
                       path=json_path(path))
        return self.move.locate(d, path, at_key)


Rule = Callable[[Context], Iterable[Diagnostic]]

from reconciler.rules import capacity, identity, inflight, location, services  # noqa: E402

# Resolution rules first: when one fails, the rules after it would only cascade.
RESOLVE: tuple[Rule, ...] = (identity.check,)
CHECKS: tuple[Rule, ...] = (location.check, services.check, capacity.check, inflight.check)


def resolve(ctx: Context) -> list[Diagnostic]:
    return [d for rule in RESOLVE for d in rule(ctx)]


def check(ctx: Context) -> list[Diagnostic]:
    return [d for rule in CHECKS for d in rule(ctx)]
