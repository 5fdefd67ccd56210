"""What the use cases return and the reporters read: Validation, PlanResult, ApplyResult."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconciler import __version__
from reconciler.diagnostics import Diagnostic
from reconciler.planner import Plan, PlannedMove
from reconciler.policy import Policy
from reconciler.state import RequestRecord
from reconciler.targeting import Partial
from reconciler.validation import Validation as Validation  # where it lives: light, for `validate`

PLAN_FORMAT = "1.0"


@dataclass
class PlanResult:
    plan: Plan
    platform_url: str
    fingerprint: str
    prior_state: dict[str, Any] | None
    git_commit: str | None
    files: int = 0
    paths: tuple[str, ...] = ()  # as given on the command line: the next command a hint suggests uses them
    state_location: str | None = None  # where the state is (a plan file records it; never with a password)
    sensitive: dict[str, dict[str, str]] = field(default_factory=dict)  # move -> "service.key" -> sha256
    notes: list[str] = field(default_factory=list)  # warnings about the run itself (a state file gone missing)
    policy: Policy | None = None  # what the plan was checked against (a plan file carries it)
    partial: Partial | None = None  # the moves --target/--exclude left out

    def plan_file_extras(self) -> dict[str, Any]:
        """What a plan file adds to the plan JSON (top level): where its state is, the policy it was checked
        against."""
        return {"state": self.state_location, "policy": self.policy.to_json() if self.policy else None}

    def move_extras(self, m: PlannedMove) -> dict[str, Any]:
        """What a plan file adds to a move: the manifest as reviewed, the digests of its sensitive values."""
        return {"manifest": m.move.document, "sensitive_sha256": self.sensitive.get(m.name, {})}

    def head(self) -> dict[str, Any]:
        """Everything but the moves (render.json streams those one at a time)."""
        return {
            "format_version": PLAN_FORMAT, "tool_version": __version__,
            "platform": {"url": self.platform_url, "fingerprint": self.fingerprint},
            "prior_state": self.prior_state, "git_commit": self.git_commit,
            "applyable": self.plan.applyable, "summary": self.plan.summary(),
            "partial": self.partial.to_json() if self.partial else None,
            "diagnostics": [d.to_json() for d in self.plan.diagnostics],
        }

    def to_json(self, with_manifests: bool = False) -> dict[str, Any]:
        moves = []
        for m in self.plan.moves:
            d = m.to_json()
            if with_manifests:
                d.update(self.move_extras(m))
            moves.append(d)
        doc = self.head()
        if with_manifests:
            doc.update(self.plan_file_extras())
        doc["moves"] = moves
        return doc


@dataclass
class ApplyResult:
    plan: PlanResult
    applied: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, error)
    in_progress: list[str] = field(default_factory=list)  # submitted, not final when apply stopped waiting
    requests: list[RequestRecord] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # not attempted after a failure or a stop
    declined: bool = False
    state_written: bool = False
    waited: bool = True  # False with --no-wait: in-progress moves are the expected outcome
    window_closed: bool = False  # the apply window closed during the run: pending moves wait for the next one

    @property
    def ok(self) -> bool:
        return (not self.failed and not self.declined and not (self.in_progress and self.waited)
                and not (self.pending and self.window_closed))


@dataclass
class DriftReport:
    """`reconcile drift`: the applied moves whose customer no longer matches them on the platform."""

    drifted: list[dict[str, Any]] = field(default_factory=list)  # {move, customer, file, line, differences}
    compared: int = 0
    skipped: list[str] = field(default_factory=list)  # not applied, superseded, or changed since
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"drifted": [{k: d[k] for k in ("move", "customer", "differences")} for d in self.drifted]}
