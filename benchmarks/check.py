"""Print the summary of a plan JSON file (`reconcile plan --format json`), with action and reason counts.

  python -m benchmarks.check PLAN_JSON

Run as its own process so that the runner never holds a large plan in memory: the peak RSS the
kernel reports for a child includes the RSS of the process that spawned it.
"""

from __future__ import annotations

import json
import sys
from collections import Counter


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.check PLAN_JSON", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as fh:
        doc = json.load(fh)
    moves = doc.get("moves") or []
    out = {
        "applyable": doc.get("applyable"),
        "summary": doc.get("summary"),
        "actions": dict(Counter(m.get("action") for m in moves)),
        "reasons": dict(Counter(m.get("reason") for m in moves if m.get("reason"))),
        "users": sum(len(m.get("users") or []) for m in moves),
        "diagnostics": [d.get("code") for d in doc.get("diagnostics") or []]
                       + [d.get("code") for m in moves for d in m.get("diagnostics") or []],
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
