"""--target/--exclude (contract section 12): which moves a plan or apply judges; the rest are left out."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.manifests import Move


@dataclass(frozen=True)
class Partial:
    """The patterns given and the moves they left out (in planning order)."""

    targets: tuple[str, ...]
    excludes: tuple[str, ...]
    left_out: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"targets": list(self.targets), "excludes": list(self.excludes), "left_out": list(self.left_out)}

    @classmethod
    def from_json(cls, doc: Any) -> Partial | None:
        """As a saved plan carries it; anything else is None (read_plan_file checks the plan's digests)."""
        if not isinstance(doc, dict):
            return None
        parts = [doc.get(k) for k in ("targets", "excludes", "left_out")]
        if not all(isinstance(p, list) and all(isinstance(x, str) for x in p) for p in parts):
            return None
        return cls(*(tuple(p) for p in parts))  # type: ignore[arg-type]

    def options(self) -> str:
        """The patterns as they were given on the command line."""
        return " ".join([*(f"--target {t}" for t in self.targets), *(f"--exclude {x}" for x in self.excludes)])


def matches(name: str, patterns: Sequence[str]) -> bool:
    # fnmatchcase: a move name is lower case by schema; a pattern means the same on every OS.
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def select(moves: Sequence[Move], targets: Sequence[str] = (),
           excludes: Sequence[str] = ()) -> tuple[list[Move], Partial | None]:
    """The moves a --target matches (all without one) and no --exclude matches; None when none is left out."""
    kept = [m for m in moves if (not targets or matches(m.name, targets)) and not matches(m.name, excludes)]
    if len(kept) == len(moves):
        return list(moves), None
    keep = {id(m) for m in kept}
    return kept, Partial(tuple(targets), tuple(excludes), tuple(m.name for m in moves if id(m) not in keep))
