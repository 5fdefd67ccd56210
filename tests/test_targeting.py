"""--target/--exclude (contract section 12): one conformance-style test per targeting rule, through the CLI."""

from __future__ import annotations

import json

from conftest import Recon

ALL = ["globex-to-northwind", "acme-to-northwind", "hooli-to-northwind"]


def plan_json(r: Recon, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    ran = r.cli("plan", "--format", "json", str(r.moves), *args)
    return ran.code, json.loads(ran.out)


def test_target_plans_only_the_matching_moves_and_says_it_is_partial(recon: Recon) -> None:
    recon.copy_moves()
    code, doc = plan_json(recon, "--target", "g*", "--target", "hooli-*")
    assert code == 0
    assert [m["name"] for m in doc["moves"]] == ["globex-to-northwind", "hooli-to-northwind"]
    assert doc["partial"] == {"targets": ["g*", "hooli-*"], "excludes": [], "left_out": ["acme-to-northwind"]}
    ran = recon.cli("plan", str(recon.moves), "--target", "g*", "--target", "hooli-*")
    assert ran.code == 0, ran
    lines = ran.out.splitlines()
    assert lines[1:3] == ["Partial plan: --target g* --target hooli-* left out 1 move; they are not planned, not "
                          "checked against the policy and not applied:", "  - acme-to-northwind"]
    assert f"Run `reconcile apply {recon.moves} --target 'g*' --target 'hooli-*'` to make these changes." in ran.out
    md = recon.cli("plan", "--format", "markdown", str(recon.moves), "--target", "g*").out
    assert "⚠️ **Partial plan**: --target g&#42; left out 2 moves" in md


def test_exclude_leaves_out_the_matching_moves(recon: Recon) -> None:
    recon.copy_moves()
    code, doc = plan_json(recon, "--exclude", "acme-*")
    assert code == 0
    assert [m["name"] for m in doc["moves"]] == ["globex-to-northwind", "hooli-to-northwind"]
    assert doc["partial"] == {"targets": [], "excludes": ["acme-*"], "left_out": ["acme-to-northwind"]}
    code, doc = plan_json(recon, "--target", "*-to-northwind", "--exclude", "globex-*", "--exclude", "hooli-*")
    assert [m["name"] for m in doc["moves"]] == ["acme-to-northwind"]
    assert doc["partial"]["left_out"] == ["globex-to-northwind", "hooli-to-northwind"]


def test_nothing_left_out_is_not_partial(recon: Recon) -> None:
    recon.copy_moves()
    for args in ((), ("--target", "*"), ("--exclude", "nothing-matches")):
        code, doc = plan_json(recon, *args)
        assert (code, doc["partial"], [m["name"] for m in doc["moves"]]) == (0, None, ALL)
    assert "Partial plan" not in recon.cli("plan", str(recon.moves), "--target", "*").out


def test_moves_left_out_are_not_judged_nor_checked_against_the_policy(recon: Recon) -> None:
    recon.copy_moves()
    recon.manifest("umbrella-to-nowhere", "umbrella", "nowhere")  # reseller-not-found, were it planned
    (recon.root / "reconcile.toml").write_text("[policy]\nmax_moves = 1\n", encoding="utf-8")
    ran = recon.cli("plan", str(recon.moves))
    assert ran.code == 1
    assert "error[reseller-not-found]" in ran.err and "error[policy-max-moves]" in ran.err
    ran = recon.cli("plan", str(recon.moves), "--target", "hooli-*")
    assert (ran.code, ran.err) == (0, ""), ran


def test_files_that_fail_yaml_or_schema_are_never_left_out(recon: Recon) -> None:
    recon.copy_moves()
    (recon.moves / "broken.yaml").write_text("apiVersion: reconciler/v1\nkind: CustomerMove\nmetadata: [\n",
                                             encoding="utf-8")
    (recon.moves / "bad-schema.yaml").write_text("apiVersion: reconciler/v1\nkind: CustomerMove\nmetadata:\n"
                                                 "  name: hooli-x\nspec: {}\n", encoding="utf-8")
    ran = recon.cli("plan", str(recon.moves), "--target", "hooli-*", "--exclude", "*")
    assert ran.code == 1, ran
    codes = sorted({line.split("error[")[1].split("]")[0] for line in ran.err.splitlines() if "error[" in line})
    assert codes == ["schema", "yaml"]
    before = len(recon.requests())
    assert recon.cli("apply", "--auto-approve", str(recon.moves), "--target", "hooli-*").code == 1
    assert len(recon.requests()) == before


def test_a_pattern_that_leaves_out_every_move_is_an_error(recon: Recon) -> None:
    recon.copy_moves()
    ran = recon.cli("plan", str(recon.moves), "--target", "nope-*")
    assert ran.code == 1
    assert ran.err.splitlines() == [
        "error: no move to plan: --target nope-* left out every move (3 moves: globex-to-northwind, "
        "acme-to-northwind, hooli-to-northwind)",
        "  hint: patterns are shell-style globs on metadata.name, e.g. --target 'acme-*'"]


def test_apply_with_target_applies_only_the_targeted_moves(recon: Recon) -> None:
    recon.copy_moves()
    ran = recon.cli("apply", "--auto-approve", str(recon.moves), "--target", "hooli-*")
    assert ran.code == 0, ran
    assert "Partial plan: --target hooli-* left out 2 moves" in ran.out
    assert [r["customer"] for r in recon.requests() if r["type"] == "CustomerMove" and
            r["status"] == "Provisioned" and r["customer"] in ("globex", "acme", "hooli")] == ["hooli"]
    assert list(recon.state_json()["moves"]) == ["hooli-to-northwind"]


def test_a_saved_plan_keeps_its_targets(recon: Recon) -> None:
    recon.copy_moves()
    ran = recon.cli("plan", str(recon.moves), "--exclude", "acme-*", "--out", "plan.json")
    assert ran.code == 0, ran
    saved = json.loads((recon.root / "plan.json").read_text())
    assert saved["partial"] == {"targets": [], "excludes": ["acme-*"], "left_out": ["acme-to-northwind"]}
    ran = recon.cli("apply", "--auto-approve", "--plan", "plan.json", "--target", "hooli-*")
    assert ran.code == 1
    assert "--target/--exclude cannot be used with --plan: a saved plan keeps the targets it was made with" in ran.err
    assert not recon.state.exists()
    ran = recon.cli("apply", "--auto-approve", "--plan", "plan.json")
    assert ran.code == 0, ran
    assert "Partial plan: --exclude acme-* left out 1 move" in ran.out
    assert sorted(recon.state_json()["moves"]) == ["globex-to-northwind", "hooli-to-northwind"]


def test_partial_and_policy_plans_are_valid_against_the_plan_schema(recon: Recon) -> None:
    from jsonschema import Draft202012Validator

    from reconciler import schema

    recon.copy_moves()
    (recon.root / "reconcile.toml").write_text('[policy]\nmax_users_per_move = 1\nfrozen_resellers = ["x"]\n'
                                               '[policy.apply_window]\nstart = "22:00"\nend = "06:00"\n'
                                               'days = ["Sat"]\ntimezone = "Europe/Berlin"\n', encoding="utf-8")
    recon.cli("plan", str(recon.moves), "--exclude", "hooli-*", "--out", "plan.json")
    doc = json.loads((recon.root / "plan.json").read_text())
    assert [d["code"] for m in doc["moves"] for d in m["diagnostics"]] == ["policy-large-move"] * 2
    validator = Draft202012Validator(schema.load("plan"))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []
