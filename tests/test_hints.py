"""Copy-paste hints and plain reasons (issue 9 item 15): the apply command of the paths planned, one message for
every way of declining the prompt, "did you mean" for unknown ids, new-move's refusals on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from conftest import RECONCILE_BIN, Workspace, manifest, manifest_yaml, run_main, subprocess_env

DECLINED = "Apply cancelled: nothing was changed (only 'yes' approves).\n"


def test_the_apply_hint_names_the_paths_planned(workspace: Workspace) -> None:
    ran = run_main("plan", "moves/acme-to-northwind.yaml", "moves/vault-to-woodgrove.yaml")
    assert ran.code == 0, ran
    assert ran.out.splitlines()[-1] == ("Run `reconcile apply moves/acme-to-northwind.yaml "
                                        "moves/vault-to-woodgrove.yaml` to make these changes.")


def test_the_apply_hint_quotes_a_path_for_the_shell(workspace: Workspace) -> None:
    (workspace.root / "my moves").mkdir()
    (workspace.root / "my moves" / "a.yaml").write_text((workspace.moves / "acme-to-northwind.yaml").read_text())
    ran = run_main("plan", "my moves")
    assert ran.out.splitlines()[-1] == "Run `reconcile apply 'my moves'` to make these changes."


def _apply_at_a_terminal(workspace: Workspace, typed: bytes) -> subprocess.CompletedProcess[str]:
    """`reconcile apply moves` with a terminal as stdin (the prompt is only shown there); `typed` is keyed in."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen([str(RECONCILE_BIN), "apply", "moves"], cwd=workspace.root, stdin=slave,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=subprocess_env(RECONCILE_PLATFORM=workspace.url,
                                                   RECONCILE_STATE=str(workspace.state)))
        time.sleep(0.5)
        os.write(master, typed)
        out, err = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("typed", [b"\n", b"no\n", b"y\n", b"YES\n", b"\x04"], ids=["empty", "no", "y", "YES", "eof"])
def test_every_way_of_declining_the_prompt_says_the_same(workspace: Workspace, typed: bytes) -> None:
    ran = _apply_at_a_terminal(workspace, typed)
    assert ran.returncode == 1, ran
    assert ran.stdout.endswith("\n" + DECLINED), ran.stdout[-500:]
    assert "Aborted" not in ran.stdout + ran.stderr
    assert not workspace.state.exists()


def test_yes_at_the_prompt_applies(workspace: Workspace) -> None:
    ran = _apply_at_a_terminal(workspace, b"yes\n")
    assert ran.returncode == 0, ran
    assert "Apply complete: 2 applied, 0 adopted, 0 failed, 2 requests submitted." in ran.stdout


def test_an_unknown_customer_in_a_manifest_gets_did_you_mean(workspace: Workspace) -> None:
    workspace.write("typo/m.yaml", manifest_yaml(manifest("acm-to-northwind", "acm", "northwind")))
    ran = run_main("plan", "typo", "--format", "json")
    assert ran.code == 1
    (d,) = json.loads(ran.out)["moves"][0]["diagnostics"]
    assert (d["code"], d["message"]) == ("customer-not-found",
                                         "customer 'acm' does not exist on the platform; did you mean 'acme'?")


def test_an_unknown_reseller_with_nothing_like_it_gets_a_hint(workspace: Workspace) -> None:
    workspace.write("typo/m.yaml", manifest_yaml(manifest("acme-to-zzz", "acme", "zzzzzz")))
    ran = run_main("plan", "typo")
    assert ran.code == 1
    assert ("error[reseller-not-found]: reseller 'zzzzzz' does not exist on the platform; check spec.toReseller "
            "(ids are exact and case-sensitive)\n") in ran.err


ID_HINT = ("  hint: ids are exact and case-sensitive; `reconcile platform export` lists the platform's customers and "
           "resellers\n")


@pytest.mark.parametrize("args, message", [
    (("acmee", "northwind"), "error: customer 'acmee' does not exist on the platform; did you mean 'acme'?\n"
                             + ID_HINT),
    (("acme", "northwnd"), "error: reseller 'northwnd' does not exist on the platform; did you mean 'northwind'?\n"
                           + ID_HINT),
    (("acme", "qqqq"), "error: reseller 'qqqq' does not exist on the platform\n" + ID_HINT),
    (("acme", "contoso"), "error: 'acme' is already a customer of 'contoso': there is nothing to move\n"
                          "  hint: name the reseller the customer should move to\n"),
    (("acme", "fabrikam"), "error: 'fabrikam' is in location 'us-east' and 'acme' in 'eu-west': a customer moves "
                           "only to a reseller in its own location\n  hint: choose a reseller in 'eu-west'\n"),
])
def test_new_move_refusals_say_why_on_stderr(workspace: Workspace, args: tuple[str, str], message: str) -> None:
    ran = run_main("new-move", *args)
    assert (ran.code, ran.out, ran.err) == (1, "", message)

