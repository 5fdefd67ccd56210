"""Text output fits the terminal (issue 9 item 16): plans, apply, status and history wrap with indentation at
the width of COLUMNS; diagnostics keep their one-line `FILE:LINE:COLUMN: error[CODE]: message` form; counts read
as English and agree between the Mermaid diagram and the table of the markdown plan."""

from __future__ import annotations

import json
import re

import pytest
from conftest import Workspace, manifest, manifest_yaml, run_main

from reconciler.render.text import wrap

DIAGNOSTIC = re.compile(r"^[^\s:][^:]*:\d+:\d+: (error|warning)\[[a-z-]+\]: \S.*$")


def _long_workspace(workspace: Workspace) -> None:
    """Moves whose explanations are long: a SAL that cannot be matched (the message lists the choices), a
    duplicate, and a property override on every user of acme."""
    services = {"hosted-exchange": {"plan": "nw-exchange", "sals": {"standard": "nw-standard"},
                                    "properties": {"mailboxQuotaMB": 16384, "activeSync": False}}}
    workspace.write("moves/acme-to-northwind.yaml",
                    manifest_yaml(manifest("acme-to-northwind", "acme", "northwind", services=services)))


def _fits(text: str, width: int) -> None:
    for line in text.splitlines():
        assert len(line) <= width, f"{len(line)} > {width}: {line!r}"


@pytest.mark.parametrize("width", [80, 100])
def test_plan_apply_status_history_fit_the_width(workspace: Workspace, width: int) -> None:
    _long_workspace(workspace)
    env = {"COLUMNS": str(width)}
    plan = run_main("plan", "moves", "--show-users", "all", env=env)
    assert plan.code == 0, plan
    _fits(plan.out, width)
    assert max(len(line) for line in plan.out.splitlines()) > width - 20  # the test is not vacuous
    applied = run_main("apply", "moves", "--auto-approve", env=env)
    assert applied.code == 0, applied
    _fits(applied.out, width)
    for command in ("status", "history"):
        ran = run_main(command, env=env)
        assert ran.code == 0, ran
        _fits(ran.out, width)


@pytest.mark.parametrize("width", [80, 100])
def test_an_invalid_plan_wraps_its_explanations_but_not_its_diagnostics(workspace: Workspace, width: int) -> None:
    workspace.write("moves/dup.yaml", manifest_yaml(manifest("acme-to-woodgrove-with-a-rather-long-name", "acme",
                                                             "woodgrove")))
    env = {"COLUMNS": str(width)}
    ran = run_main("plan", "moves", env=env)
    assert ran.code == 1
    _fits(ran.out, width)
    continued = [line for line in ran.out.splitlines() if line.startswith("        ") and "[" not in line]
    assert continued, ran.out  # a wrapped explanation goes on indented under its move
    diags = json.loads(run_main("plan", "moves", "--format", "json").out)
    count = sum(len(m["diagnostics"]) for m in diags["moves"]) + len(diags["diagnostics"])
    err = ran.err.splitlines()
    assert len(err) == count and all(DIAGNOSTIC.match(line) for line in err), ran.err
    assert any(len(line) > width for line in err)  # one line each, however long


def test_wrap_breaks_at_spaces_and_indents_continuations() -> None:
    lines = [t.plain for t in wrap("    error\\[x]: " + "word " * 30, 40)]
    assert all(len(line) <= 40 for line in lines)
    assert lines[0].startswith("    error[x]: word") and all(line.startswith("        word") for line in lines[1:])
    assert [t.plain for t in wrap("short", 40)] == ["short"]
    assert [t.plain for t in wrap("x" * 50, 20, hang=2)] == ["x" * 20, "  " + "x" * 18, "  " + "x" * 12]


def test_english_counts(workspace: Workspace) -> None:
    ran = run_main("plan", "moves/vault-to-woodgrove.yaml")
    assert ran.out.splitlines()[0] == ("Plan: 1 to move, 0 no-op, 0 invalid; 1 user changes; 1 request; 0 errors, "
                                       "0 warnings")
    assert "applyable" not in ran.out
    v = run_main("validate", "moves/vault-to-woodgrove.yaml")
    assert v.out == "1 file, 1 move: valid (0 errors, 0 warnings)\n"
    workspace.write("bad/x.yaml", "a: [\n")
    v = run_main("validate", "bad")
    assert v.out == "1 file, 0 moves: invalid (1 error, 0 warnings)\n"


def test_markdown_counts_agree_between_the_diagram_and_the_table(workspace: Workspace) -> None:
    ran = run_main("plan", "moves", "--format", "markdown")
    assert ran.code == 0, ran
    # vault has 2 users, 1 of them changes: the diagram says what the table says.
    assert "vault (1 user changed)" in ran.out and "acme (3 users changed)" in ran.out
    row = next(line for line in ran.out.splitlines() if line.startswith("| 🔀 vault-to-woodgrove |"))
    assert row.split("|")[4].strip() == "1"
    assert "(1 user changed)</summary>" in ran.out
    assert "applyable" not in ran.out.replace('"applyable"', "")
