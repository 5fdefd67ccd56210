"""The floor: the least work any plan of the same customers must do, in plain Python.

  python -m benchmarks.floor DB CUSTOMERS_JSON OUT

Reads the rows of the given customers' users and user services from the benchmark's own platform
database into dicts (SELECT * ... WHERE customer IN (...), in chunks), compares every row with a
modified copy (dict equality, as a diff per user does), and dumps the changed rows as JSON to OUT
(compact: json.dumps without indent runs the C encoder; with indent Python's own, ~3x slower).
The runner times this whole process exactly as it times a `reconcile` step (interpreter start
included), so "plan <= 2x floor" compares like with like.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from typing import Any

CHUNK = 500


def rows(conn: sqlite3.Connection, table: str, customers: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(0, len(customers), CHUNK):
        chunk = customers[i:i + CHUNK]
        cur = conn.execute(f"SELECT * FROM {table} WHERE customer IN ({','.join('?' * len(chunk))})", chunk)
        names = [d[0] for d in cur.description]
        out.extend(dict(zip(names, r, strict=True)) for r in cur)
    return out


def floor(db: str, customers: list[str]) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        users = rows(conn, "users", customers)
        services = rows(conn, "user_services", customers)
    finally:
        conn.close()
    changed_users = []
    for u in users:
        after = dict(u, customer=u["customer"])
        if after != u:
            changed_users.append(u["id"])
    changes = []
    for s in services:
        before = dict(s, overrides=json.loads(s["overrides"]))
        after = dict(before, sal=s["sal"] + "-moved")
        if after != before:
            changes.append({"user": s["user"], "service": s["service"],
                            "sal": {"from": before["sal"], "to": after["sal"]}, "overrides": after["overrides"]})
    return {"customers": len(customers), "users": len(users), "user_services": len(services),
            "unchanged_users": len(users) - len(changed_users), "changes": changes}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m benchmarks.floor DB CUSTOMERS_JSON OUT", file=sys.stderr)
        return 2
    db, customers_file, out = args
    with open(customers_file, encoding="utf-8") as fh:
        customers = json.load(fh)
    result = floor(db, customers)
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(result, ensure_ascii=False))  # json.dumps without indent: the C encoder
    print(f"floor: {result['users']} users, {result['user_services']} user services", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
