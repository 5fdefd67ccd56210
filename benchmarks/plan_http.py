"""Plan over HTTP on loopback against the same plan on the embedded platform (issue 10's acceptance).

  python -m benchmarks.plan_http [--customers N] [--users-per M] [--moves K] [--repeat R] [--keep DIR]

Builds the benchmark fixture (benchmarks.generate: 4,000 customers x 50 users, 1,000 moves; no whale),
initialises the embedded platform, serves it with `reconcile platform serve` on 127.0.0.1 (client and
server share the machine's cores, as the target says), and times `reconcile plan --format json` of the
batch R times each way, alternating, keeping the best of each: on a shared machine the minimum is the
least disturbed. Then one more HTTP plan with `--verbose` counts the calls the client made (one log line
per call, retries included) and the users each users-page carried. Both plans must agree.

Prints a markdown table; exits 1 when the ratio exceeds 2.5 or a users page averages under 500 users
(0 with --no-fail), 2 when the benchmark cannot run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.generate import Params, generate
from benchmarks.run import BenchmarkError, Served, child_env, measure, reconcile_command

TARGET_RATIO = 2.5
TARGET_USERS_PER_CALL = 500
TOKEN = Served.TOKEN
CALL = re.compile(r"\b(GET|POST|PUT|DELETE) (/\S*) -> (\S+) ")


def _say(msg: str) -> None:
    print(f"[plan_http {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def plan_doc(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return doc


def comparable(doc: dict[str, Any]) -> Any:
    """What must agree between the two plans: everything but where the platform is."""
    return {"summary": doc["summary"], "moves": doc["moves"], "diagnostics": doc["diagnostics"]}


def run(p: Params, repeat: int, work: Path) -> dict[str, Any]:
    reconcile = reconcile_command()
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _say(f"generating the fixture ({p.customers:,} customers x {p.users_per} users, {p.moves:,} moves)")
    desc = generate(work / "fixture", p)
    batch_users = sum(m["users"] for m in desc["moves"])
    db_url = f"sqlite:///{work / 'platform.db'}"
    m = measure([*reconcile, "platform", "init", "--seed", str(work / "fixture" / "platform.json"), "--platform",
                 db_url], work, logs / "init.out", logs / "init.err", child_env(False))
    if m.exit_code:
        raise BenchmarkError(f"platform init failed: {(logs / 'init.err').read_text()[-2000:]}")
    moves = str(work / "fixture" / "moves")
    server = Served(reconcile, db_url, logs, "plan")
    try:
        _say(f"serving at {server.url}")
        times: dict[str, list[float]] = {"embedded": [], "http": []}
        cpu: dict[str, list[float]] = {"embedded": [], "http": [], "server": []}
        where = {"embedded": db_url, "http": server.url}
        for i in range(repeat):
            for kind in ("embedded", "http"):
                out, err = logs / f"plan-{kind}-{i}.json", logs / f"plan-{kind}-{i}.err"
                served_before = server.cpu_s()
                m = measure([*reconcile, "plan", moves, "--format", "json", "--platform", where[kind], "--state",
                             str(work / "state.json")], work, out, err, child_env(False, RECONCILE_TOKEN=TOKEN))
                if m.exit_code:
                    raise BenchmarkError(f"plan over {kind}: exit {m.exit_code}: {err.read_text()[-2000:]}")
                times[kind].append(m.wall_s)
                cpu[kind].append(m.cpu_s)
                if kind == "http":
                    cpu["server"].append(server.cpu_s() - served_before)
                _say(f"plan {kind} #{i + 1}: {m.wall_s:.2f} s (client CPU {m.cpu_s:.2f} s)")
        if comparable(plan_doc(logs / "plan-embedded-0.json")) != comparable(plan_doc(logs / "plan-http-0.json")):
            raise BenchmarkError("the plans over HTTP and on the embedded platform differ")
        out, err = logs / "plan-http-verbose.json", logs / "plan-http-verbose.err"
        m = measure([*reconcile, "--verbose", "plan", moves, "--format", "json", "--platform", server.url,
                     "--state", str(work / "state.json")], work, out, err, child_env(False, RECONCILE_TOKEN=TOKEN))
        if m.exit_code:
            raise BenchmarkError(f"plan --verbose: exit {m.exit_code}: {err.read_text()[-2000:]}")
        calls = [(c.group(1), c.group(2).split("?")[0], c.group(3)) for c in CALL.finditer(err.read_text("utf-8"))]
    finally:
        server.stop()
    if not calls:
        raise BenchmarkError(f"`reconcile --verbose plan` logged no call: {err.read_text()[-2000:]}")
    by_route = Counter(f"{method} {path}" for method, path, _ in calls)
    users_calls = by_route.get("POST /v1/users/query", 0)
    return {"fixture": {"customers": p.customers, "users_per": p.users_per, "moves": len(desc["moves"]),
                        "moved_users": batch_users, "platform_users": desc["users"]},
            "embedded_s": min(times["embedded"]), "http_s": min(times["http"]), "times": times, "cpu": cpu,
            "calls": len(calls), "by_route": dict(by_route), "users_calls": users_calls,
            "users_per_call": batch_users / users_calls if users_calls else 0.0,
            "cpus": os.cpu_count(), "load": [round(x, 2) for x in os.getloadavg()]}


def table(r: dict[str, Any]) -> str:
    ratio = r["http_s"] / r["embedded_s"]
    f = r["fixture"]
    rows = [
        "| step | result | target | |",
        "|---|---:|---:|---|",
        f"| plan, embedded (`sqlite:///`) | {r['embedded_s']:.2f} s | | |",
        f"| plan, HTTP on loopback (`reconcile platform serve`) | {r['http_s']:.2f} s | | |",
        f"| CPU: embedded plan / HTTP client / server | {min(r['cpu']['embedded']):.2f} s / "
        f"{min(r['cpu']['http']):.2f} s / {min(r['cpu']['server']):.2f} s | | |",
        f"| ratio HTTP / embedded | {ratio:.2f}x | <= {TARGET_RATIO}x | "
        f"{'PASS' if ratio <= TARGET_RATIO else 'FAIL'} |",
        f"| HTTP calls of one plan | {r['calls']} | | |",
        f"| users pages (`POST /v1/users/query`) | {r['users_calls']} | | |",
        f"| users per users call | {r['users_per_call']:.0f} | >= {TARGET_USERS_PER_CALL} | "
        f"{'PASS' if r['users_per_call'] >= TARGET_USERS_PER_CALL else 'FAIL'} |",
    ]
    routes = ", ".join(f"{k}: {v}" for k, v in sorted(r["by_route"].items()))
    return (f"Plan of {f['moves']:,} moves ({f['moved_users']:,} users moved; platform of {f['customers']:,} "
            f"customers, {f['platform_users']:,} users), best of {len(r['times']['http'])}, "
            f"{r['cpus']} CPUs, load {r['load']}\n\n" + "\n".join(rows) + f"\n\nCalls by route: {routes}\n")


def main(argv: list[str] | None = None) -> int:
    d = Params()
    ap = argparse.ArgumentParser(prog="python -m benchmarks.plan_http", description=__doc__.split("\n")[0])
    ap.add_argument("--customers", type=int, default=d.customers)
    ap.add_argument("--users-per", type=int, default=d.users_per)
    ap.add_argument("--moves", type=int, default=d.moves)
    ap.add_argument("--repeat", type=int, default=3, help="timed plans each way (default 3; the best counts)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    ap.add_argument("--keep", metavar="DIR", help="build in DIR (new or empty) and keep it")
    ap.add_argument("--no-fail", action="store_true", help="exit 0 even when a target fails")
    a = ap.parse_args(argv)
    p = Params(a.customers, a.users_per, a.moves, 0, d.resellers)
    try:
        if a.keep:
            work = Path(a.keep)
            work.mkdir(parents=True, exist_ok=True)
            r = run(p, max(1, a.repeat), work)
        else:
            with tempfile.TemporaryDirectory(prefix="plan-http-") as tmp:
                r = run(p, max(1, a.repeat), Path(tmp))
    except (BenchmarkError, ValueError, OSError) as e:
        print(f"benchmark error: {e}", file=sys.stderr)
        return 2
    print(table(r))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=1) + "\n", encoding="utf-8")
    ok = r["http_s"] / r["embedded_s"] <= TARGET_RATIO and r["users_per_call"] >= TARGET_USERS_PER_CALL
    return 0 if ok or a.no_fail else 1


if __name__ == "__main__":
    sys.exit(main())
