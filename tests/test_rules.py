"""The move rules, data-driven: every folder of tests/cases/ is one plan checked against its expected.yaml."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import app, config, schema
from reconciler.diagnostics import Diagnostic
from reconciler.planner import PlannedMove
from reconciler.platforms import sqlite

CASES = Path(__file__).parent / "cases"
CASE_DIRS = sorted(p for p in CASES.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))

TOP_KEYS = {"platform", "paths", "moves", "diagnostics", "summary"}
MOVE_KEYS = {"action", "reason", "from_reseller", "errors", "warnings", "exact", "services", "users"}
DIAG_KEYS = {"errors", "warnings", "exact"}
EXACT_KEYS = {"code", "message", "line", "column", "file"}


def _expected(case: Path) -> dict[str, Any]:
    data = yaml.safe_load((case / "expected.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{case.name}/expected.yaml: not a mapping"
    assert set(data) <= TOP_KEYS, f"{case.name}/expected.yaml: unknown keys {set(data) - TOP_KEYS}"
    assert "moves" in data and "diagnostics" in data, f"{case.name}/expected.yaml needs `moves` and `diagnostics`"
    for name, m in (data["moves"] or {}).items():
        assert set(m) <= MOVE_KEYS, f"{case.name}: move {name}: unknown keys {set(m) - MOVE_KEYS}"
        assert {"action", "reason", "errors", "warnings"} <= set(m), f"{case.name}: move {name}: incomplete"
        for e in m.get("exact") or []:
            assert set(e) <= EXACT_KEYS and {"code", "message", "line", "column"} <= set(e), (case.name, e)
    top = data["diagnostics"]
    assert set(top) <= DIAG_KEYS and {"errors", "warnings"} <= set(top), f"{case.name}: diagnostics: {top}"
    for e in top.get("exact") or []:
        assert set(e) == EXACT_KEYS, f"{case.name}: a top-level exact diagnostic needs all of {EXACT_KEYS}: {e}"
    return data


def _codes(diags: list[Diagnostic]) -> tuple[set[str], set[str]]:
    return {d.code for d in diags if d.is_error}, {d.code for d in diags if not d.is_error}


def _check_exact(where: str, diags: list[Diagnostic], wanted: list[dict[str, Any]], default_file: str | None) -> None:
    have = [(d.code, d.message, d.file, d.line, d.column) for d in diags]
    for e in wanted:
        key = (e["code"], e["message"], e.get("file", default_file), e["line"], e["column"])
        assert key in have, f"{where}: missing diagnostic {key}; have {have}"


def _services(pm: PlannedMove) -> dict[str, Any]:
    return {s["service"]: {
        "plan": [s["plan"]["from"], s["plan"]["to"]],
        "sal_mappings": [[m["from"], m["to"], m["source"]] for m in s["sal_mappings"]],
        "customer_properties": {k: [v["from"], v["to"]] for k, v in s["customer_properties"].items()},
    } for s in pm.services}


def _users(pm: PlannedMove) -> dict[str, Any]:
    return {u["user"]: {s["service"]: {
        "sal": [s["sal"]["from"], s["sal"]["to"]],
        "properties": {k: [v["from"], v["to"]] for k, v in s["properties"].items()},
    } for s in u["services"]} for u in pm.users}


@pytest.mark.parametrize("case", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_case(case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = _expected(case)
    seed = (case / exp.get("platform", "platform.yaml")).resolve()
    assert seed.is_file(), f"{case.name}: no seed {seed}"
    work = tmp_path / "case"
    shutil.copytree(case, work, ignore=shutil.ignore_patterns("expected.yaml", "platform.yaml"))
    url = f"sqlite:///{tmp_path / 'platform.db'}"
    sqlite.init(url, str(seed))
    monkeypatch.chdir(work)
    settings = config.resolve(platform=url, state=str(tmp_path / "state.json"), cwd=work)

    result = app.plan(exp.get("paths", ["moves"]), settings)
    plan = result.plan

    want_moves: dict[str, Any] = exp["moves"] or {}
    assert [m.name for m in plan.moves] == list(want_moves), "the planned moves, in plan order"
    for pm in plan.moves:
        want = want_moves[pm.name]
        where = f"{case.name}: {pm.name}"
        assert (pm.action, pm.reason) == (want["action"], want["reason"]), where
        if "from_reseller" in want:
            assert pm.from_reseller == want["from_reseller"], where
        errors, warnings = _codes(pm.diagnostics)
        assert errors == set(want["errors"]), f"{where}: error codes: {[d.format() for d in pm.diagnostics]}"
        assert warnings == set(want["warnings"]), f"{where}: warning codes"
        _check_exact(where, pm.diagnostics, want.get("exact") or [], pm.move.file)
        assert all(d.file == pm.move.file for d in pm.diagnostics), f"{where}: a move's diagnostics sit in its file"
        if "services" in want:
            assert _services(pm) == want["services"], where
        if "users" in want:
            assert _users(pm) == (want["users"] or {}), where
        if pm.action == "move":
            assert len(pm.requests) == 1 and pm.requests[0]["type"] == "CustomerMove", where
        else:
            assert pm.requests == [], where

    top = exp["diagnostics"]
    errors, warnings = _codes(plan.diagnostics)
    assert errors == set(top["errors"]), f"{case.name}: top-level errors: {[d.format() for d in plan.diagnostics]}"
    assert warnings == set(top["warnings"]), f"{case.name}: top-level warnings"
    _check_exact(f"{case.name}: top level", plan.diagnostics, top.get("exact") or [], None)

    if "summary" in exp:
        assert plan.summary() == exp["summary"]
    doc = result.to_json()
    assert doc["applyable"] is not any(d.is_error for d in plan.all_diagnostics())
    problems = [d.message for d, _, _ in schema.iter_diagnostics("plan", doc)]
    assert problems == [], f"{case.name}: the plan JSON does not match schemas/plan.schema.json"


def test_every_contract_code_has_a_case() -> None:
    """Each diagnostic code of contract section 4 that needs no state file is exercised by some case."""
    needed = {"yaml", "schema", "duplicate-name", "customer-not-found", "reseller-not-found", "reseller-cannot-move",
              "not-a-reseller", "location-mismatch", "service-not-offered", "service-not-subscribed",
              "plan-unknown", "plan-unmatched", "sal-unknown", "sal-unmatched", "property-unknown",
              "property-type", "capacity-exceeded", "provisioning-in-flight", "duplicate-move", "sal-unused"}
    seen: set[str] = set()
    for case in CASE_DIRS:
        exp = _expected(case)
        seen |= set(exp["diagnostics"]["errors"]) | set(exp["diagnostics"]["warnings"])
        for m in (exp["moves"] or {}).values():
            seen |= set(m["errors"]) | set(m["warnings"])
    assert needed - seen == set()
