"""The saved plan file (`plan --out`, `apply --plan`): what was reviewed is what is applied (issue 9 items 3, 7,
13, 14): an edited plan is refused, the file is written 0600 by rename, it records its state, and a run with no
move to judge is an error."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from conftest import MOVES, SEED, run_main

from reconciler.model import sha256_of

HINT = "  hint: make the plan again with `reconcile plan --out FILE` and review it\n"


def _platform(tmp_path: Path) -> list[str]:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    assert run_main("platform", "init", "--seed", str(SEED), "--platform", url).code == 0
    return ["--platform", url, "--state", str(tmp_path / "state.json")]


def _saved(tmp_path: Path, where: list[str], name: str) -> tuple[Path, dict]:
    plan_file = tmp_path / "saved.json"
    ran = run_main("plan", str(MOVES / f"{name}.yaml"), "--out", str(plan_file), *where)
    assert ran.code == 0, ran.err
    return plan_file, json.loads(plan_file.read_text(encoding="utf-8"))


def _rewrite(plan_file: Path, doc: dict) -> None:
    for m in doc["moves"]:
        m["manifest_sha256"] = sha256_of(m["manifest"])  # the documented digest, recomputed by whoever edits
    plan_file.write_text(json.dumps(doc), encoding="utf-8")


# -- item 3: an edited saved plan is never applied ------------------------------------------------------------------
def test_an_edited_manifest_value_with_its_digest_recomputed_is_refused(tmp_path: Path) -> None:
    where = _platform(tmp_path)
    plan_file, doc = _saved(tmp_path, where, "acme-to-northwind")
    doc["moves"][0]["manifest"]["spec"]["services"]["hosted-exchange"]["properties"] = {"mailboxQuotaMB": 9999}
    _rewrite(plan_file, doc)

    ran = run_main("apply", "--plan", str(plan_file), "--auto-approve", *where)

    assert ran.code == 1
    assert ran.err.startswith(f"error: {plan_file}: the plan is stale: what apply would do differs from what the plan "
                              "file says was reviewed; what would differ now:\n")
    assert ("  Item root['acme-to-northwind']['services']['hosted-exchange']['customer_properties']['mailboxQuotaMB'] "
            "({'from': None, 'to': 9999}) added to dictionary.\n") in ran.err
    assert ("  Value of root['acme-to-northwind']['users']['alice@acme.example']['hosted-exchange']['properties']"
            "['mailboxQuotaMB']['to'] changed from 20480 to 9999.\n") in ran.err
    assert ran.err.endswith(HINT)
    assert not (tmp_path / "state.json").exists()  # nothing was applied


def test_an_edited_sensitive_value_is_refused_through_its_digest(tmp_path: Path) -> None:
    """Shown as "(sensitive)" both ways: only the digest the plan file carries tells the values apart. Even the
    request id is brought in line with the edit, so that the digest is the one difference left."""
    where = _platform(tmp_path)
    plan_file, doc = _saved(tmp_path, where, "vault-to-woodgrove")
    move = doc["moves"][0]
    assert list(move["sensitive_sha256"]) == ["hosted-exchange.journalPassword"]
    assert "new-Secret-7d1" not in json.dumps({k: v for k, v in move.items() if k != "manifest"})
    move["manifest"]["spec"]["services"]["hosted-exchange"]["properties"]["journalPassword"] = "attacker-Secret"
    edited = tmp_path / "edited" / "vault-to-woodgrove.yaml"
    edited.parent.mkdir()
    edited.write_text(json.dumps(move["manifest"]), encoding="utf-8")
    replan = json.loads(run_main("plan", str(edited), "--format", "json", *where).out)
    move["requests"] = replan["moves"][0]["requests"]
    _rewrite(plan_file, doc)

    ran = run_main("apply", "--plan", str(plan_file), "--auto-approve", *where)

    assert ran.code == 1
    assert "the plan is stale: what apply would do differs from what the plan file says was reviewed" in ran.err
    assert "root['vault-to-woodgrove']['sensitive_sha256']['hosted-exchange.journalPassword']" in ran.err
    assert "attacker-Secret" not in ran.err + ran.out and "new-Secret-7d1" not in ran.err + ran.out
    assert not (tmp_path / "state.json").exists()


def test_the_reviewed_plan_with_a_sensitive_value_applies(tmp_path: Path) -> None:
    where = _platform(tmp_path)
    plan_file, _ = _saved(tmp_path, where, "vault-to-woodgrove")
    ran = run_main("apply", "--plan", str(plan_file), "--auto-approve", *where)
    assert ran.code == 0, ran.err
    assert "Apply complete: 1 applied, 0 adopted, 0 failed, 1 request submitted." in ran.out


def test_the_stdout_plan_json_carries_no_manifest_no_digest_of_secrets_and_no_state(tmp_path: Path) -> None:
    where = _platform(tmp_path)
    doc = json.loads(run_main("plan", str(MOVES), "--format", "json", *where).out)
    assert "state" not in doc
    assert all("manifest" not in m and "sensitive_sha256" not in m for m in doc["moves"])


# -- item 7: written 0600 by rename ------------------------------------------------------------------------------
def test_plan_out_over_an_existing_0644_file_is_0600(tmp_path: Path) -> None:
    where = _platform(tmp_path)
    out = tmp_path / "plan.json"
    out.write_text("old", encoding="utf-8")
    out.chmod(0o644)
    assert run_main("plan", str(MOVES), "--out", str(out), *where).code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text(encoding="utf-8"))["format_version"] == "1.0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.db", "plan.json"]  # no temp file left


def test_plan_out_onto_a_symlink_replaces_the_link_and_never_writes_through_it(tmp_path: Path) -> None:
    where = _platform(tmp_path)
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me", encoding="utf-8")
    target.chmod(0o644)
    link = tmp_path / "plan.json"
    link.symlink_to(target)
    assert run_main("plan", str(MOVES), "--out", str(link), *where).code == 0
    assert not link.is_symlink() and stat.S_IMODE(link.stat().st_mode) == 0o600
    assert target.read_text(encoding="utf-8") == "keep me"


def test_plan_out_into_a_missing_directory_is_one_error(tmp_path: Path) -> None:
    where = _platform(tmp_path)
    out = tmp_path / "nowhere" / "plan.json"
    ran = run_main("plan", str(MOVES), "--out", str(out), *where)
    assert ran.code == 1
    assert ran.err == f"error: cannot write the plan file {out}: No such file or directory\n"


# -- item 13: the plan file records its state --------------------------------------------------------------------
def test_apply_plan_from_another_directory_uses_the_state_the_plan_records(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    assert run_main("platform", "init", "--seed", str(SEED), "--platform", url).code == 0
    repo = tmp_path / "repo"
    (repo / "moves").mkdir(parents=True)
    shutil.copy(MOVES / "acme-to-northwind.yaml", repo / "moves")
    monkeypatch.chdir(repo)
    assert run_main("apply", "moves", "--auto-approve", "--platform", url, "--state", "state.json").code == 0
    shutil.copy(MOVES / "vault-to-woodgrove.yaml", repo / "moves")
    assert run_main("plan", "moves", "--out", "plan.json", "--platform", url, "--state", "state.json").code == 0
    assert json.loads((repo / "plan.json").read_text(encoding="utf-8"))["state"] == str(repo / "state.json")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "reconcile.toml").write_text('[state]\npath = "other-state.json"\n', encoding="utf-8")
    monkeypatch.chdir(elsewhere)
    ran = run_main("apply", "--plan", str(repo / "plan.json"), "--auto-approve", "--platform", url,
                   env={"RECONCILE_STATE": str(elsewhere / "env-state.json")})

    assert ran.code == 0, ran.err
    assert "Apply complete: 1 applied, 0 adopted, 0 failed, 1 request submitted." in ran.out
    assert sorted(p.name for p in elsewhere.iterdir()) == ["reconcile.toml"]  # no stray .reconcile/, no state
    assert set(json.loads((repo / "state.json").read_text(encoding="utf-8"))["moves"]) == {
        "acme-to-northwind", "vault-to-woodgrove"}


def test_state_on_the_command_line_overrides_the_plan_files(tmp_path: Path) -> None:
    where = _platform(tmp_path)
    plan_file, _ = _saved(tmp_path, where, "acme-to-northwind")
    other = tmp_path / "other.json"
    ran = run_main("apply", "--plan", str(plan_file), "--auto-approve", where[0], where[1], "--state", str(other))
    assert ran.code == 0, ran.err
    assert other.exists() and not (tmp_path / "state.json").exists()


def test_state_location_never_holds_a_password() -> None:
    from reconciler.app import state_location

    assert state_location("postgresql://ops:s3cret@db:5432/rec?schema=x&password=p") == \
        "postgresql://ops@db:5432/rec?schema=x"
    assert state_location("rel/state.json") == os.path.abspath("rel/state.json")


# -- item 14: a lost state file, and a run with no move ----------------------------------------------------------
def test_a_missing_state_with_its_backup_present_warns_on_plan_and_apply(tmp_path: Path) -> None:
    where = _platform(tmp_path)
    state = tmp_path / "state.json"
    assert run_main("apply", str(MOVES / "acme-to-northwind.yaml"), "--auto-approve", *where).code == 0
    assert run_main("apply", str(MOVES / "vault-to-woodgrove.yaml"), "--auto-approve", *where).code == 0
    state.unlink()
    warning = (f"warning: there is no state file at {state}, but its backup {state}.backup exists: every move is "
               f"planned as if nothing were recorded; if the state was lost, restore it with "
               f"`cp {state}.backup {state}`\n")
    planned = run_main("plan", str(MOVES), *where)
    assert planned.code == 0 and planned.err.startswith(warning), planned.err
    applied = run_main("apply", str(MOVES), "--auto-approve", *where)
    assert applied.code == 0 and applied.err.startswith(warning), applied.err


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_no_manifest_found_is_an_error_unless_allowed(tmp_path: Path, command: str) -> None:
    where = _platform(tmp_path)
    empty = tmp_path / "moves"
    empty.mkdir()
    extra = ["--auto-approve"] if command == "apply" else []
    ran = run_main(command, str(empty), *extra, *where)
    assert ran.code == 1
    assert ran.err == (f"error: no move to {command}: no manifest (*.yaml, *.yml) found in {empty}\n"
                       f"  hint: check the paths; `reconcile {command} --allow-empty` accepts a run with no move\n")
    allowed = run_main(command, str(empty), "--allow-empty", *extra, *where)
    assert allowed.code == 0, allowed.err
    assert not (tmp_path / "state.json").exists()


def test_files_that_hold_no_move_are_an_error(tmp_path: Path) -> None:
    where = _platform(tmp_path)
    moves = tmp_path / "moves"
    moves.mkdir()
    (moves / "empty.yaml").write_text("# nothing yet\n", encoding="utf-8")
    ran = run_main("plan", str(moves), *where)
    assert ran.code == 1
    assert ran.err.endswith(f"error: no move to plan: the 1 manifest file found in {moves} holds no move\n"
                            "  hint: check the paths; `reconcile plan --allow-empty` accepts a run with no move\n")
