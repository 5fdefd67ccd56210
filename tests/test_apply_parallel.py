"""Apply with moves in flight at once (contract section 10): the same outcome for every N; a failure stops new
submissions while the moves in flight are waited for and recorded. (A batch moves a customer at most once:
the duplicate-move rule, so one customer's moves never overlap.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import Recon, generated_seed

N_CUSTOMERS = 24


def batch(root: Path) -> Recon:
    """24 customers (1 to 3 users each) moving src -> dst."""
    root.mkdir(parents=True, exist_ok=True)
    seed = generated_seed(root / "seed.json", {f"c{i:02d}": 1 + i % 3 for i in range(N_CUSTOMERS)})
    r = Recon(root / "ws", seed)
    for i in range(N_CUSTOMERS):
        r.manifest(f"c{i:02d}-to-dst", f"c{i:02d}", "dst", "eu", file=f"{i:02d}.yaml")
    return r


def outcome(r: Recon) -> dict[str, Any]:
    """What must be equal for every N: the platform (requests without their timestamps) and each move's record."""
    doc = r.export()
    for q in doc["requests"]:
        for k in ("submitted_at", "completed_at"):
            q.pop(k, None)
    doc["requests"].sort(key=lambda q: q["id"])
    st = r.state_json()
    moves = {n: (m["status"], [q["id"] for q in m["requests"]], [q["status"] for q in m["requests"]])
             for n, m in st["moves"].items()}
    return {"platform": doc, "moves": moves}


@pytest.mark.parametrize("n", [1, 4, 16])
def test_every_parallelism_applies_the_batch_once(tmp_path: Path, n: int) -> None:
    r = batch(tmp_path)
    ran = r.cli("apply", "--auto-approve", "--parallelism", str(n), str(r.moves))
    assert ran.code == 0, ran
    assert f"Apply complete: {N_CUSTOMERS} applied, 0 adopted, 0 failed, {N_CUSTOMERS} requests submitted." in ran.out
    got = outcome(r)
    assert {s for s, _, _ in got["moves"].values()} == {"applied"}
    assert all(r.customer(f"c{i:02d}", got["platform"])["parent"] == "dst" for i in range(N_CUSTOMERS))
    # and a second apply changes nothing
    again = r.cli("apply", "--auto-approve", "--parallelism", str(n), str(r.moves))
    assert again.code == 0, again
    assert outcome(r) == got


def test_the_outcome_does_not_depend_on_n(tmp_path: Path) -> None:
    """The same comparison within one test, so it never depends on which parametrized runs happened."""
    results = []
    for n in (1, 4, 16):
        r = batch(tmp_path / f"n{n}")
        assert r.cli("apply", "--auto-approve", "--parallelism", str(n), str(r.moves)).code == 0
        results.append(outcome(r))
    assert results[0] == results[1] == results[2]


def test_after_a_failure_no_new_move_is_submitted_and_those_in_flight_are_recorded(tmp_path: Path) -> None:
    r = batch(tmp_path)

    def hold(doc: dict[str, Any]) -> None:
        r.customer("c03", doc)["users"][0]["hold"] = "unpaid invoice"
    r.edit_platform(hold)
    ran = r.cli("apply", "--auto-approve", "--parallelism", "4", str(r.moves))
    assert ran.code == 1, ran
    assert "c03-to-dst failed: user u000@c03.example cannot be provisioned: unpaid invoice" in ran.out
    st = r.state_json()
    statuses = {n: m["status"] for n, m in st["moves"].items()}
    assert statuses["c03-to-dst"] == "failed"
    # every move started before the failure was seen is recorded with what the platform did; none after it
    submitted = {q["customer"] for q in r.requests()}
    recorded = {n.split("-")[0] for n, s in statuses.items() if s in ("applied", "failed")}
    assert submitted == recorded
    assert len(submitted) < N_CUSTOMERS
    assert all(s in ("applied", "failed") for s in statuses.values())  # nothing left in-progress
    assert "not attempted after the failure" in ran.out
