"""The plan JSON of contract section 6."""

from __future__ import annotations

import json
from typing import Any

from reconciler.app import PlanResult


def plan(result: PlanResult) -> str:
    return json.dumps(result.to_json(), indent=2, ensure_ascii=False)


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False)
