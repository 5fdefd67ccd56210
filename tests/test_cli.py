"""The command line through click's CliRunner: exit codes, stdout/stderr, formats, new-move, --help."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner
from conftest import SECRETS, SEED, Workspace, manifest, manifest_yaml, run_main

from reconciler import __version__, app
from reconciler.cli import cli

DIAG_LINE = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): (?P<sev>error|warning)\[(?P<code>[a-z-]+)\]: "
                       r"(?P<msg>.+)$")

INVALID_SCHEMA = ("apiVersion: reconciler/v1\nkind: CustomerMove\nmetadata:\n  name: Bad_Name\n"
                  "spec:\n  customer: acme\n  toReseller: northwind\n")


def state_serial(ws: Workspace) -> int | None:
    return json.loads(ws.state.read_text())["serial"] if ws.state.exists() else None


# -- every command, --help and --version ----------------------------------------------------------
def all_commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out.extend(all_commands(cmd, (*prefix, name)))
    return out


def test_the_contract_commands_exist() -> None:
    names = set(all_commands())
    for cmd in [("validate",), ("plan",), ("apply",), ("status",), ("new-move",), ("platform",),
                ("platform", "init"), ("platform", "export"), ("history",)]:
        assert cmd in names


@pytest.mark.parametrize("cmd", [(), *all_commands()], ids=lambda c: " ".join(c) or "reconcile")
def test_help_of_every_command(cmd: tuple[str, ...]) -> None:
    for flag in ("--help", "-h"):
        r = run_main(*cmd, flag)
        assert r.code == 0, r
        assert r.out.startswith(f"Usage: reconcile {' '.join(cmd)}".rstrip() + " ")
        assert r.err == ""


def test_help_through_click_runner_invoke() -> None:
    r = CliRunner().invoke(cli, ["plan", "--help"])
    assert r.exit_code == 0
    assert "--detailed-exitcode" in r.output


def test_version() -> None:
    r = run_main("--version")
    assert (r.code, r.out) == (0, f"reconcile, version {__version__}\n")


def test_no_command_shows_usage() -> None:
    r = run_main()
    assert r.code in (0, 1) and "Usage: reconcile" in r.out + r.err


# -- usage errors exit 1, not 2 ----------------------------------------------------------------------
@pytest.mark.parametrize("args, fragment", [
    (["plan"], "Missing argument 'PATH...'"),
    (["validate"], "Missing argument 'PATH...'"),
    (["plan", "--bogus", "x"], "--bogus"),
    (["validate", "--format", "xml", "x"], "Invalid value for '--format'"),
    (["plan", "--format", "yaml", "x"], "Invalid value for '--format'"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
    (["apply"], "give manifest PATHs or --plan PLANFILE (one of them)"),
    (["apply", "moves", "--plan", "p.json"], "give manifest PATHs or --plan PLANFILE (one of them)"),
    (["apply", "--lock-timeout", "-1", "moves"], "Invalid value for '--lock-timeout'"),
    (["new-move", "acme"], "Missing argument 'RESELLER'"),
    (["platform", "init"], "Missing option '--seed'"),
    (["status", "--format", "yaml"], "Invalid value for '--format'"),
])
def test_usage_errors_exit_1(workspace: Workspace, args: list[str], fragment: str) -> None:
    r = run_main(*args)
    assert r.code == 1, r
    assert "Error: " in r.err and fragment in r.err.replace('"', "'")
    assert "Usage: reconcile" in r.err
    assert r.out == ""
    assert state_serial(workspace) is None


def test_through_the_bare_click_group_usage_errors_are_clicks_own_2() -> None:
    # What `main` exists to change: click alone exits 2 on usage errors.
    assert CliRunner().invoke(cli, ["plan"]).exit_code == 2


# -- validate -----------------------------------------------------------------------------------
def test_validate_ok(workspace: Workspace) -> None:
    r = run_main("validate", "moves")
    assert r.code == 0, r
    assert r.out == "2 files, 2 moves: valid (0 errors, 0 warnings)\n"
    assert r.err == ""


def test_validate_needs_no_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.yaml").write_text(manifest_yaml(manifest()))
    r = run_main("validate", "m.yaml", env={"RECONCILE_PLATFORM": f"sqlite:///{tmp_path}/none.db"})
    assert r.code == 0, r
    assert not (tmp_path / "none.db").exists()


def test_validate_errors_on_stderr_in_the_parsable_form(workspace: Workspace) -> None:
    workspace.write("bad/a.yaml", INVALID_SCHEMA)
    workspace.write("bad/b.yaml", "apiVersion: reconciler/v1\napiVersion: reconciler/v1\n")
    workspace.write("bad/c.yaml", "")
    r = run_main("validate", "bad")
    assert r.code == 1
    assert r.out == "3 files, 0 moves: invalid (3 errors, 1 warning)\n"
    lines = r.err.splitlines()
    assert lines == [
        "bad/a.yaml:4:9: error[schema]: $.metadata.name: 'Bad_Name' does not match ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        "bad/a.yaml:6:3: error[schema]: $.spec: 'location' is required",
        "bad/b.yaml:2:1: error[yaml]: duplicate key 'apiVersion' (first at line 1)",
        "bad/c.yaml:1:1: warning[empty]: the file holds no manifest",
    ]
    for line in lines:
        assert DIAG_LINE.match(line), line


def test_validate_warnings_alone_are_valid(workspace: Workspace) -> None:
    workspace.write("w/empty.yaml", "---\n")
    r = run_main("validate", "w", "moves")
    assert r.code == 0
    assert r.out == "3 files, 2 moves: valid (0 errors, 1 warning)\n"
    assert r.err == "w/empty.yaml:2:1: warning[empty]: empty document; nothing to plan\n"


def test_validate_json_shape(workspace: Workspace) -> None:
    workspace.write("bad/a.yaml", INVALID_SCHEMA)
    r = run_main("validate", "--format", "json", "bad", "moves")
    assert r.code == 1
    doc = json.loads(r.out)
    assert set(doc) == {"valid", "diagnostics"}
    assert doc["valid"] is False
    assert doc["diagnostics"][0] == {
        "severity": "error", "code": "schema",
        "message": "$.metadata.name: 'Bad_Name' does not match ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        "file": "bad/a.yaml", "line": 4, "column": 9, "path": "$.metadata.name"}
    assert len(doc["diagnostics"]) == 2
    r = run_main("validate", "--format", "json", "moves")
    assert (r.code, json.loads(r.out)) == (0, {"valid": True, "diagnostics": []})


def test_validate_github_annotations(workspace: Workspace) -> None:
    workspace.write("bad/a.yaml", INVALID_SCHEMA)
    workspace.write("bad/c.yaml", "")
    r = run_main("validate", "--format", "github", "bad")
    assert r.code == 1
    ann = r.out.splitlines()
    assert len(ann) == 3
    assert ann[0].startswith("::error file=bad/a.yaml,line=4,col=9")
    assert ann[0].endswith("::$.metadata.name: 'Bad_Name' does not match ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    assert ann[1].startswith("::error file=bad/a.yaml,line=6,col=3")
    assert ann[2].startswith("::warning file=bad/c.yaml,line=1,col=1")
    assert "bad/a.yaml:4:9: error[schema]: " in r.err  # the parsable lines still go to stderr


def test_validate_defaults_to_github_on_github_actions(workspace: Workspace) -> None:
    workspace.write("bad/a.yaml", INVALID_SCHEMA)
    r = run_main("validate", "bad", env={"GITHUB_ACTIONS": "true"})
    assert r.code == 1
    assert r.out.startswith("::error file=bad/a.yaml,line=4,col=9")


def test_github_annotation_values_are_escaped(workspace: Workspace) -> None:
    workspace.write("a,b:c%.yaml", "x: 1\nx: 2\n")
    r = run_main("validate", "--format", "github", "a,b:c%.yaml")
    (ann,) = r.out.splitlines()
    assert ann.startswith("::error file=a%2Cb%3Ac%25.yaml,line=2,col=1")


# -- plan -------------------------------------------------------------------------------------
def test_plan_exit_codes(workspace: Workspace) -> None:
    assert run_main("plan", "moves").code == 0
    r = run_main("plan", "--detailed-exitcode", "moves")
    assert r.code == 2 and r.out.startswith("Plan: 2 to move")
    workspace.write("bad/a.yaml", INVALID_SCHEMA)
    for args in (["plan", "bad", "moves"], ["plan", "--detailed-exitcode", "bad", "moves"]):
        r = run_main(*args)
        assert r.code == 1
        assert r.err.splitlines()[0] == ("bad/a.yaml:4:9: error[schema]: $.metadata.name: 'Bad_Name' does not "
                                         "match ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_plan_detailed_exitcode_0_without_changes(workspace: Workspace) -> None:
    # initech is already under northwind: an adoption, which is not a change
    workspace.write("noop/initech.yaml", manifest_yaml(manifest("initech-stays", "initech", "northwind")))
    r = run_main("plan", "--detailed-exitcode", "noop")
    assert r.code == 0, r
    assert "1 no-op" in r.out


def test_plan_rule_violation_exits_1_with_the_diagnostic(workspace: Workspace) -> None:
    workspace.write("bad/x.yaml", manifest_yaml(manifest("ghost-move", "ghost", "northwind")))
    r = run_main("plan", "--detailed-exitcode", "bad")
    assert r.code == 1
    (line,) = r.err.splitlines()
    m = DIAG_LINE.match(line)
    assert m and m["file"] == "bad/x.yaml" and m["code"] == "customer-not-found" and m["line"] == "6"


def test_plan_format_json_is_json_only_on_stdout(workspace: Workspace) -> None:
    workspace.write("bad/a.yaml", INVALID_SCHEMA)
    r = run_main("plan", "--format", "json", "bad", "moves")
    assert r.code == 1
    doc = json.loads(r.out)
    assert doc["applyable"] is False and len(doc["moves"]) == 2
    assert [d["code"] for d in doc["diagnostics"]] == ["schema", "schema"]
    assert "error[schema]" in r.err


def test_plan_out_writes_a_plan_file(workspace: Workspace) -> None:
    r = run_main("plan", "--out", "plan.json", "moves")
    assert r.code == 0
    assert "Saved the plan to plan.json; apply exactly it with `reconcile apply --plan plan.json`." in r.out
    doc = json.loads((workspace.root / "plan.json").read_text())
    assert [m["name"] for m in doc["moves"]] == ["acme-to-northwind", "vault-to-woodgrove"]
    assert all("manifest" in m for m in doc["moves"])
    assert (workspace.root / "plan.json").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("cmd", [["plan"], ["validate"], ["apply", "--auto-approve"]])
def test_a_missing_path(workspace: Workspace, cmd: list[str]) -> None:
    r = run_main(*cmd, "moves", "nope")
    assert (r.code, r.out) == (1, "")
    assert r.err == "error: nope: no such file or directory\n  hint: pass manifest files or folders that hold them\n"
    assert not workspace.state.exists()


def test_plan_without_a_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.yaml").write_text(manifest_yaml(manifest()))
    r = run_main("plan", "--platform", f"sqlite:///{tmp_path}/none.db", "--state", "s.json", "m.yaml")
    assert r.code == 1
    assert r.err == (f"error: no platform database at {tmp_path}/none.db\n"
                     "  hint: create it with `reconcile platform init --seed FILE`\n")


def test_plan_unsupported_platform_url_lists_providers_and_hides_the_password(workspace: Workspace) -> None:
    r = run_main("plan", "--platform", "postgres://u:pw-Secret-1@db/x", "moves")
    assert (r.code, r.out) == (1, "")
    assert r.err.startswith("error: unsupported platform URL 'postgres://u@db/x' (scheme postgres://); installed "
                            "providers: sqlite://, http://, https://"), r.err
    assert "pw-Secret-1" not in r.err


def test_plan_never_writes_the_state(workspace: Workspace) -> None:
    assert run_main("plan", "moves").code == 0
    assert not workspace.state.exists()


def test_an_internal_error_is_one_line_without_traceback(workspace: Workspace,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(app, "plan", boom)
    r = run_main("plan", "moves")
    assert r.code == 1
    assert r.err.startswith("error: internal error (RuntimeError: kaboom); this is a bug in reconciler")
    assert "Traceback" not in r.err


# -- apply ------------------------------------------------------------------------------------
def test_apply_refuses_without_auto_approve_off_a_terminal(workspace: Workspace) -> None:
    r = run_main("apply", "moves", input="yes\n")
    assert r.code == 1
    assert r.err == ("error: stdin is not a terminal, so apply cannot ask for approval\n"
                     "  hint: review `reconcile plan`, then run `reconcile apply --auto-approve`\n")
    assert not workspace.state.exists()
    assert run_main("plan", "--detailed-exitcode", "moves").code == 2  # nothing was applied


def test_apply_auto_approve_then_nothing_to_do(workspace: Workspace) -> None:
    r = run_main("apply", "--auto-approve", "moves")
    assert r.code == 0, r
    assert "Apply complete: 2 applied, 0 adopted, 0 failed, 2 requests submitted." in r.out
    serial = state_serial(workspace)
    r = run_main("apply", "--auto-approve", "moves")
    assert r.code == 0
    assert r.out.strip().endswith("Nothing to apply: the state file was left as it was.")
    assert state_serial(workspace) == serial
    assert run_main("plan", "--detailed-exitcode", "moves").code == 0


def test_apply_with_an_invalid_move_applies_nothing(workspace: Workspace) -> None:
    workspace.write("moves/zz.yaml", manifest_yaml(manifest("ghost-move", "ghost", "northwind")))
    r = run_main("apply", "--auto-approve", "moves")
    assert r.code == 1
    assert "error[customer-not-found]" in r.err
    assert "error: nothing was applied: the plan has errors (see above)" in r.err
    assert run_main("plan", "--detailed-exitcode", "moves/acme-to-northwind.yaml").code == 2


# -- status, platform ---------------------------------------------------------------------------
def test_status_without_state(workspace: Workspace) -> None:
    r = run_main("status")
    assert (r.code, r.out) == (0, f"No recorded moves in {workspace.state}.\n")
    r = run_main("status", "--format", "json")
    assert (r.code, json.loads(r.out)) == (0, {"moves": {}})


def test_status_after_apply_and_unknown_name(workspace: Workspace) -> None:
    assert run_main("apply", "--auto-approve", "moves").code == 0
    r = run_main("status", "--format", "json")
    assert r.code == 0
    moves = json.loads(r.out)["moves"]
    assert set(moves) == {"acme-to-northwind", "vault-to-woodgrove"}
    assert moves["acme-to-northwind"]["status"] == "applied"
    r = run_main("status", "nope")
    assert r.code == 1 and r.err.startswith("error: no recorded move named 'nope'")


def test_platform_init_and_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/p.db"
    r = run_main("platform", "init", "--seed", str(SEED), "--platform", url)
    assert r.code == 0, r
    assert r.out == f"Created {url}: 2 locations, 2 services, 8 customers, 7 users, 0 requests\n"
    r = run_main("platform", "init", "--seed", str(SEED), "--platform", url)
    assert r.code == 1
    assert r.err.startswith(f"error: a platform already exists at {tmp_path}/p.db\n  hint: pass --force")
    assert run_main("platform", "init", "--seed", str(SEED), "--platform", url, "--force").code == 0
    r = run_main("platform", "export", "--platform", url)
    assert r.code == 0
    doc = yaml.safe_load(r.out)
    assert doc["kind"] == "Platform" and len(doc["customers"]) == 8
    r = run_main("platform", "export", "--platform", url, "--format", "json")
    assert json.loads(r.out) == doc


def test_platform_init_with_a_bad_seed_lists_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "seed.yaml").write_text("apiVersion: reconciler/v1\nkind: Platform\nlocations: [{id: eu}]\n"
                                        "customers:\n  - {id: a, location: mars}\n")
    r = run_main("platform", "init", "--seed", "seed.yaml", "--platform", f"sqlite:///{tmp_path}/p.db")
    assert r.code == 1
    assert r.err.splitlines() == [
        "error: seed.yaml: the seed has 2 problem(s); nothing was created:",
        "seed.yaml:5:23: error[seed]: $.customers[0].location: customer 'a': unknown location 'mars'",
        "seed.yaml:5:5: error[seed]: $.customers[0].parent: customer 'a' has no parent; only a top-level "
        "reseller may"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed.yaml"]


def test_platform_init_of_a_non_platform_file(tmp_path: Path) -> None:
    f = tmp_path / "notes.db"
    f.write_text("hello\n" * 100)
    r = run_main("plan", "--platform", f"sqlite:///{f}", "--state", str(tmp_path / "s.json"), str(SEED.parent))
    assert r.code == 1
    assert r.err.startswith(f"error: {f} is not a reconciler platform database")
    assert "Traceback" not in r.err


# -- new-move ---------------------------------------------------------------------------------
def test_new_move_writes_a_manifest_that_plans(workspace: Workspace) -> None:
    r = run_main("new-move", "vault", "woodgrove")
    assert r.code == 0, r
    workspace.write("new/vault.yaml", r.out)
    assert run_main("validate", "new/vault.yaml").code == 0
    p = run_main("plan", "--format", "json", "new/vault.yaml")
    assert p.code == 0, p
    (move,) = json.loads(p.out)["moves"]
    assert (move["name"], move["action"], move["customer"], move["to_reseller"]) == (
        "vault-to-woodgrove", "move", "vault", "woodgrove")
    assert yaml.safe_load(r.out)["spec"] == {"customer": "vault", "toReseller": "woodgrove", "location": "eu-west",
                                             "services": {"hosted-exchange": {"plan": "exchange-basic",
                                                                              "sals": {"standard": "standard"}}}}
    for secret in SECRETS:
        assert secret not in r.out + r.err


def test_new_move_leaves_unmatched_as_comments_listing_the_choices(workspace: Workspace) -> None:
    r = run_main("new-move", "acme", "northwind")
    assert r.code == 0, r
    text = r.out
    assert "      # plan: exchange-basic is not offered here; choose one of: nw-exchange\n" in text
    assert "        # standard: choose one of: nw-standard, premium\n" in text
    assert "        premium: premium\n" in text
    assert "    sharepoint:\n      plan: sp-basic\n      sals:\n        standard: standard\n" in text
    doc = yaml.safe_load(text)
    assert doc["metadata"] == {"name": "acme-to-northwind"}
    # schema-valid as printed; the plan names exactly what is left to choose
    workspace.write("new/acme.yaml", text)
    assert run_main("validate", "new/acme.yaml").code == 0
    p = run_main("plan", "--format", "json", "new/acme.yaml")
    assert p.code == 1
    (move,) = json.loads(p.out)["moves"]
    assert sorted(d["code"] for d in move["diagnostics"]) == ["plan-unmatched", "sal-unmatched"]
    # filled in with the listed choices, it plans as a move
    filled = (text.replace("# plan: exchange-basic is not offered here; choose one of: nw-exchange",
                           "plan: nw-exchange")
              .replace("# standard: choose one of: nw-standard, premium", "standard: nw-standard"))
    workspace.write("new/acme.yaml", filled)
    p = run_main("plan", "--format", "json", "new/acme.yaml")
    assert p.code == 0, p
    assert json.loads(p.out)["moves"][0]["action"] == "move"


def test_new_move_with_a_service_not_offered_is_still_schema_valid(workspace: Workspace) -> None:
    r = run_main("new-move", "acme", "woodgrove")
    assert r.code == 0
    assert "# WARNING: woodgrove does not offer sharepoint" in r.out
    workspace.write("new/acme.yaml", r.out)
    assert run_main("validate", "new/acme.yaml").code == 0
    p = run_main("plan", "--format", "json", "new/acme.yaml")
    codes = [d["code"] for d in json.loads(p.out)["moves"][0]["diagnostics"]]
    assert "service-not-offered" in codes


ID_HINT = ("  hint: ids are exact and case-sensitive; `reconcile platform export` lists the platform's customers and "
           "resellers\n")


@pytest.mark.parametrize("args, message", [
    (("ghost", "northwind"), "error: customer 'ghost' does not exist on the platform\n" + ID_HINT),
    (("acme", "nowhere"), "error: reseller 'nowhere' does not exist on the platform\n" + ID_HINT),
    (("acme", "initech"), "error: 'initech' is not a reseller; a customer can only move to a reseller\n"),
    (("litware", "northwind"), "error: 'litware' is a reseller; a reseller customer cannot be moved\n"),
])
def test_new_move_errors(workspace: Workspace, args: tuple[str, str], message: str) -> None:
    r = run_main("new-move", *args)
    assert (r.code, r.out, r.err) == (1, "", message)


def test_new_move_output_is_plain_block_yaml(workspace: Workspace) -> None:
    r = run_main("new-move", "acme", "northwind")
    body = [line for line in r.out.splitlines() if not line.lstrip().startswith("#")]
    assert not any(c in line for line in body for c in "{}[]\"'&*!")
    assert "name: acme-to-northwind" in r.out and "toReseller: northwind" in r.out


def test_plan_github_format_adds_annotations(workspace: Workspace) -> None:
    workspace.write("bad/x.yaml", manifest_yaml(manifest("ghost-move", "ghost", "northwind")))
    r = run_main("plan", "--format", "github", "bad", "moves")
    assert r.code == 1
    ann = [line for line in r.out.splitlines() if line.startswith("::")]
    assert len(ann) == 1 and ann[0].startswith("::error file=bad/x.yaml,line=6,col=13")
    assert "customer-not-found" in ann[0]
    assert r.out.splitlines()[1].startswith("Plan: 2 to move, 0 no-op, 1 invalid")


def test_plan_out_to_an_unwritable_place(workspace: Workspace) -> None:
    r = run_main("plan", "--out", "no/such/dir/plan.json", "moves")
    assert r.code == 1
    assert r.err.startswith("error: cannot write the plan file no/such/dir/plan.json: ")


def test_export_without_a_platform(tmp_path: Path) -> None:
    r = run_main("platform", "export", "--platform", f"sqlite:///{tmp_path}/none.db")
    assert (r.code, r.out) == (1, "")
    assert r.err.startswith(f"error: no platform database at {tmp_path}/none.db\n")


def test_history_exit_codes(workspace: Workspace) -> None:
    r = run_main("history")
    assert (r.code, r.out) == (0, "No recorded moves.\n")
    assert run_main("apply", "--auto-approve", "moves").code == 0
    r = run_main("history", "--customer", "acme", "--format", "json")
    assert r.code == 0
    entries = json.loads(r.out)["moves"]
    assert [(e["name"], e["status"]) for e in entries] == [("acme-to-northwind", "applied")]
    r = run_main("history", "--customer", "nobody")
    assert (r.code, r.out) == (0, "No recorded moves of nobody.\n")
