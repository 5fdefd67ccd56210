"""What `validate` prints after its diagnostics: one text line, or the JSON document. No rich, no results."""

from __future__ import annotations

import json as json_

from reconciler.render import count
from reconciler.validation import Validation


def text(result: Validation) -> str:
    """The last line of `validate`: one line, like the diagnostics before it."""
    n_err = sum(1 for d in result.diagnostics if d.is_error)
    n_warn = len(result.diagnostics) - n_err
    return (f"{count(result.files, 'file')}, {count(result.moves, 'move')}: "
            f"{'valid' if result.valid else 'invalid'} ({count(n_err, 'error')}, {count(n_warn, 'warning')})")


def json(result: Validation) -> str:
    return json_.dumps({"valid": result.valid, "diagnostics": [d.to_json() for d in result.diagnostics]}, indent=2)
