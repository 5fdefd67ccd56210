"""The plan JSON of contract section 6, streamed move by move (a 50,000-user plan is tens of MB)."""

from __future__ import annotations

import json
from typing import IO, Any

from reconciler.results import PlanResult
from reconciler.state import State


def _dump(value: Any) -> str:
    # No indent: json's C encoder only runs without one, and it is ten times faster. ASCII only: C1 controls
    # and bidi overrides from a manifest or the platform reach a terminal as \uXXXX, never raw. No cycle check:
    # a plan is a tree the planner built (its user entries shared, never circular), and the check costs 20%.
    return json.dumps(value, check_circular=False)


def write_plan(result: PlanResult, out: IO[str], with_manifests: bool = False) -> None:
    head_doc = result.head()
    if with_manifests:
        head_doc.update(result.plan_file_extras())
    head = _dump(head_doc)  # the moves follow one at a time: the whole plan is never one string
    out.write(head[:-1] + ', "moves": [')
    for i, m in enumerate(result.plan.moves):
        d = m.to_json()
        if with_manifests:
            d.update(result.move_extras(m))
        out.write(("\n  " if i == 0 else ",\n  ") + _dump(d))
    out.write("\n]}\n")


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=2)


def status(st: State | None) -> str:
    """`{"moves": {NAME: record}}`, records as in the state file."""
    return dumps({"moves": {} if st is None else {n: r.model_dump(mode="json") for n, r in st.moves.items()}})


def history(entries: list[dict[str, Any]]) -> str:
    return dumps({"moves": entries})
