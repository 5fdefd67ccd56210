"""The `validate` use case and its result, on their own: the pre-commit hook imports this, not app.py (no
platform, planner, state, rich, httpx or pydantic for a valid manifest)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reconciler import manifests
from reconciler.diagnostics import Diagnostic


@dataclass
class Validation:
    diagnostics: list[Diagnostic]
    moves: int
    files: int

    @property
    def valid(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)


def validate(paths: Sequence[str]) -> Validation:
    """Offline: YAML, schema, names."""
    loaded = manifests.load(paths)
    return Validation(loaded.diagnostics, len(loaded.moves), loaded.files)
