"""A saved plan refused as stale says what would differ now (app._what_changed, through the CLI)."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from conftest import MOVES, SEED, run_main


def _platform(tmp_path: Path) -> list[str]:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    assert run_main("platform", "init", "--seed", str(SEED), "--platform", url).code == 0
    return ["--platform", url, "--state", str(tmp_path / "state.json")]


def test_stale_plan_names_the_user_whose_change_differs(tmp_path: Path) -> None:
    where = _platform(tmp_path)
    moves = tmp_path / "moves"
    shutil.copytree(MOVES, moves)
    plan_file = tmp_path / "saved.json"
    assert run_main("plan", str(moves / "acme-to-northwind.yaml"), "--out", str(plan_file), *where).code == 0
    # Someone changes alice's SAL on the platform after the plan was reviewed.
    exported = run_main("platform", "export", where[0], where[1])
    doc = yaml.safe_load(exported.out)
    for c in doc["customers"]:
        for u in c.get("users") or []:
            if u["id"] == "alice@acme.example":
                u["services"]["hosted-exchange"]["sal"] = "standard"
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    assert run_main("platform", "init", "--force", "--seed", str(tmp_path / "changed.yaml"), *where[:2]).code == 0

    ran = run_main("apply", "--plan", str(plan_file), "--auto-approve", *where)

    assert ran.code == 1
    assert "the plan is stale: the platform changed for the customers it moves since it was made" in ran.err
    assert "what would differ now:" in ran.err
    assert "root['acme-to-northwind']['users']['alice@acme.example']['hosted-exchange']['sal']" in ran.err
    assert "hint: make the plan again with `reconcile plan --out FILE`" in ran.err
    assert not (tmp_path / "state.json").exists()  # nothing was applied


def test_stale_plan_of_an_unchanged_platform_applies(tmp_path: Path) -> None:
    where = _platform(tmp_path)
    plan_file = tmp_path / "saved.json"
    assert run_main("plan", str(MOVES / "acme-to-northwind.yaml"), "--out", str(plan_file), *where).code == 0
    ran = run_main("apply", "--plan", str(plan_file), "--auto-approve", *where)
    assert ran.code == 0, ran.err
    assert "Apply complete: 1 applied, 0 adopted, 0 failed, 1 request submitted." in ran.out
