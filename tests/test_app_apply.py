"""apply and status, through reconciler.app and the CLI: journal, failures and retries, adoption, saved plans,
resuming after a crash."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from reconciler import app, applier
from reconciler.errors import ReconcilerError, StalePlan
from reconciler.model import Request
from reconciler.platforms.sqlite import SqlitePlatform

if TYPE_CHECKING:
    from conftest import Recon

GLOBEX, ACME, HOOLI = "globex-to-northwind", "acme-to-northwind", "hooli-to-northwind"
HOLD = "user dave@acme.example cannot be provisioned: mailbox on litigation hold"
EXCHANGE = {"hosted-exchange": {"plan": "nw-exchange", "sals": {"standard": "nw-standard"}}}


def digest_of(manifest: Path) -> str:
    """The contract's manifest digest: sha256 of the document as canonical JSON."""
    doc = yaml.safe_load(manifest.read_text("utf-8"))
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                          .encode()).hexdigest()


def next_ids(recon: Recon) -> dict[str, str]:
    """The request id each move would be submitted under now (contract section 7: from its name, its
    manifest digest, the attempt and the customer's starting point), as `reconcile plan` shows it."""
    return {m["name"]: m["requests"][0]["id"] for m in plan_json(recon)["moves"] if m["requests"]}


def rid(recon: Recon, name: str) -> str:
    return next_ids(recon)[name]


def clear_hold(recon: Recon) -> None:
    recon.edit_platform(lambda doc: [u.update(hold=None) for u in recon.customer("acme", doc)["users"]])


def statuses(st: dict[str, Any]) -> dict[str, str]:
    return {n: r["status"] for n, r in st["moves"].items()}


def plan_json(recon: Recon, *paths: str) -> dict[str, Any]:
    ran = recon.cli("plan", "--format", "json", *(paths or [str(recon.moves)]))
    assert ran.code in (0, 1), ran
    doc: dict[str, Any] = json.loads(ran.out)
    return doc


# -- a failed request -------------------------------------------------------------------------------
def test_a_failed_request_records_failed_exits_1_and_stops(recon: Recon) -> None:
    recon.copy_moves()
    acme_before = recon.customer("acme")
    first = rid(recon, ACME)
    ran = recon.cli("apply", "--auto-approve", "--parallelism", "1", "moves")  # one after another, in plan order
    assert ran.code == 1, ran
    assert "Apply complete: 1 applied, 0 adopted, 1 failed, 2 requests submitted." in ran.out
    assert f"{ACME} failed: {HOLD}" in ran.out
    assert f"1 move not attempted after the failure: {HOOLI}" in ran.out

    st = recon.state_json()
    assert statuses(st) == {GLOBEX: "applied", ACME: "failed"}  # hooli: pending, not recorded
    rec = st["moves"][ACME]
    assert (rec["customer"], rec["from_reseller"], rec["to_reseller"]) == ("acme", "contoso", "northwind")
    assert rec["applied_serial"] == st["serial"]
    assert len(rec["requests"]) == 1
    req = rec["requests"][0]
    assert (req["id"], req["status"], req["error"], req["sub_requests"], req["failed_sub_requests"]) == (
        first, "Failed", HOLD, 7, 1)
    assert req["completed_at"] is not None

    assert [(r["customer"], r["status"]) for r in recon.requests()] == [("globex", "Provisioned"), ("acme", "Failed")]
    assert recon.customer("acme") == acme_before
    assert recon.customer("hooli")["parent"] == "contoso"
    assert recon.customer("globex")["parent"] == "northwind"


def test_the_apply_result_names_failed_and_pending_moves(recon: Recon) -> None:
    recon.copy_moves()
    planned = next_ids(recon)
    result = app.apply(recon.settings(), [str(recon.moves)], options=applier.Options(parallelism=1))
    assert not result.ok
    assert (result.applied, result.adopted, result.failed, result.pending) == (
        [GLOBEX], [], [(ACME, HOLD)], [HOOLI])
    assert [r.id for r in result.requests] == [planned[GLOBEX], planned[ACME]]
    assert result.state_written


def test_a_rerun_after_a_failure_submits_a_new_attempt_then_applies_once_the_hold_is_cleared(recon: Recon) -> None:
    recon.copy_moves()
    first = rid(recon, ACME)
    assert recon.cli("apply", "--auto-approve", "--parallelism", "1", "moves").code == 1

    # Still on hold: attempt 2, under a new id, fails again; hooli still waits.
    second = rid(recon, ACME)
    ran = recon.cli("apply", "--auto-approve", "--parallelism", "1", "moves")
    assert ran.code == 1, ran
    assert "Apply complete: 0 applied, 0 adopted, 1 failed, 1 request submitted." in ran.out
    st = recon.state_json()
    assert statuses(st) == {GLOBEX: "applied", ACME: "failed"}
    assert [(r["id"], r["status"]) for r in st["moves"][ACME]["requests"]] == [
        (first, "Failed"), (second, "Failed")]

    clear_hold(recon)
    third = rid(recon, ACME)
    ran = recon.cli("apply", "--auto-approve", "moves")
    assert ran.code == 0, ran
    assert "Apply complete: 2 applied, 0 adopted, 0 failed, 2 requests submitted." in ran.out
    st = recon.state_json()
    assert statuses(st) == {GLOBEX: "applied", ACME: "applied", HOOLI: "applied"}
    ids = [r["id"] for r in st["moves"][ACME]["requests"]]
    assert ids == [first, second, third]
    assert len(set(ids)) == 3
    assert st["moves"][ACME]["requests"][-1]["status"] == "Provisioned"
    assert [(r["id"], r["status"]) for r in recon.requests("acme")] == [
        (ids[0], "Failed"), (ids[1], "Failed"), (ids[2], "Provisioned")]
    assert [r["status"] for r in recon.requests("globex")] == ["Provisioned"]  # not submitted again
    assert [r["status"] for r in recon.requests("hooli")] == ["Provisioned"]
    assert {u["id"]: u["services"]["hosted-exchange"]["sal"] for u in recon.customer("acme")["users"]} == {
        "alice@acme.example": "premium", "bob@acme.example": "nw-standard", "carol@acme.example": "nw-standard",
        "dave@acme.example": "nw-standard"}

    # Done: a plan is all noop, another apply changes nothing.
    doc = plan_json(recon)
    assert [(m["action"], m["reason"]) for m in doc["moves"]] == [("noop", "applied")] * 3
    before = recon.state_bytes()
    assert recon.cli("apply", "--auto-approve", "moves").code == 0
    assert recon.state_bytes() == before
    assert len(recon.requests()) == 5


# -- adoption -----------------------------------------------------------------------------------------
def test_a_move_already_at_destination_is_adopted_without_a_request(recon: Recon) -> None:
    recon.manifest("initech-to-northwind", "initech", "northwind")
    doc = plan_json(recon)
    assert [(m["action"], m["reason"]) for m in doc["moves"]] == [("noop", "already-at-destination")]
    before = recon.export()
    ran = recon.cli("apply", "--auto-approve", "moves")
    assert ran.code == 0, ran
    assert "Apply complete: 0 applied, 1 adopted, 0 failed, 0 requests submitted." in ran.out
    st = recon.state_json()
    rec = st["moves"]["initech-to-northwind"]
    assert (rec["status"], rec["requests"], rec["from_reseller"], rec["to_reseller"]) == (
        "adopted", [], "northwind", "northwind")
    assert rec["applied_serial"] == st["serial"] and rec["applied_at"] is not None
    assert recon.export() == before

    after = recon.state_bytes()
    ran = recon.cli("apply", "--auto-approve", "moves")
    assert ran.code == 0, ran
    assert recon.state_bytes() == after
    assert [(m["action"], m["reason"]) for m in plan_json(recon)["moves"]] == [("noop", "applied")]


# -- saved plans ------------------------------------------------------------------------------------------
def saved_plan(recon: Recon, *manifests: str) -> Path:
    out = recon.root / "reviewed.plan.json"
    ran = recon.cli("plan", *(manifests or [str(recon.moves)]), "--out", str(out))
    assert ran.code == 0, ran
    return out


def test_a_saved_plan_applies_once_from_anywhere_without_the_manifests(recon: Recon,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE)
    recon.manifest(HOOLI, "hooli", "northwind", services=EXCHANGE)
    plan_file = saved_plan(recon)
    planned = json.loads(plan_file.read_text("utf-8"))
    shutil.rmtree(recon.moves)  # what was reviewed is in the plan file
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    ran = recon.cli("apply", "--auto-approve", "--plan", str(plan_file))
    assert ran.code == 0, ran
    st = recon.state_json()
    assert statuses(st) == {GLOBEX: "applied", HOOLI: "applied"}
    assert [r["id"] for r in recon.requests()] == [m["requests"][0]["id"] for m in planned["moves"]]
    assert [st["moves"][m["name"]]["manifest"]["sha256"] for m in planned["moves"]] == [
        m["manifest_sha256"] for m in planned["moves"]]

    state_after = recon.state_bytes()
    ran = recon.cli("apply", "--auto-approve", "--plan", str(plan_file))
    assert ran.code == 1, ran
    assert (f"error: {plan_file}: the plan is stale: it was made against no state, the state is now at serial "
            f"{st['serial']} (a saved plan applies once)") in ran.err
    assert "hint: make the plan again with `reconcile plan --out FILE`" in ran.err
    assert recon.state_bytes() == state_after
    assert len(recon.requests()) == 2


def test_a_saved_plan_is_stale_once_the_state_moved_on(recon: Recon) -> None:
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE)
    assert recon.cli("apply", "--auto-approve", "moves").code == 0
    serial = recon.state_json()["serial"]
    recon.manifest(HOOLI, "hooli", "northwind", services=EXCHANGE)
    plan_file = saved_plan(recon)
    other = recon.root / "other"
    other.mkdir()
    (other / "u.yaml").write_text(yaml.safe_dump({
        "apiVersion": "reconciler/v1", "kind": "CustomerMove", "metadata": {"name": "umbrella-to-northwind"},
        "spec": {"customer": "umbrella", "toReseller": "northwind", "location": "eu-west", "services": EXCHANGE}}))
    assert recon.cli("apply", "--auto-approve", str(other)).code == 0  # another apply in between
    ran = recon.cli("apply", "--auto-approve", "--plan", str(plan_file))
    assert ran.code == 1, ran
    assert f"it was made against serial {serial}, the state is now at serial " in ran.err
    assert recon.requests("hooli") == []


def test_a_saved_plan_is_stale_when_the_platform_changed_for_its_customers(recon: Recon) -> None:
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE)
    plan_file = saved_plan(recon)

    def quota(doc: dict[str, Any]) -> None:
        recon.customer("globex", doc)["users"][0]["services"]["hosted-exchange"]["overrides"] = {"mailboxQuotaMB": 1}
    recon.edit_platform(quota)
    ran = recon.cli("apply", "--auto-approve", "--plan", str(plan_file))
    assert ran.code == 1, ran
    assert (f"error: {plan_file}: the plan is stale: the platform changed for the customers it moves since it was "
            "made") in ran.err
    assert recon.requests() == []
    assert not recon.state.exists()


def test_a_saved_plan_is_stale_when_a_request_for_its_customer_is_in_flight(recon: Recon) -> None:
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE)
    plan_file = saved_plan(recon)
    recon.edit_platform(lambda doc: doc.update(requests=[
        {"id": "rq-elsewhere", "type": "CustomerMove", "customer": "globex", "status": "InProgress"}]))
    ran = recon.cli("apply", "--auto-approve", "--plan", str(plan_file))
    assert ran.code == 1, ran
    assert "the plan is stale" in ran.err
    assert [r["id"] for r in recon.requests()] == ["rq-elsewhere"]


def test_a_saved_plan_is_not_stale_when_only_other_customers_changed(recon: Recon) -> None:
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE)
    plan_file = saved_plan(recon)

    def quota(doc: dict[str, Any]) -> None:
        recon.customer("umbrella", doc)["users"][0]["services"]["hosted-exchange"]["overrides"] = {"archive": True}
    recon.edit_platform(quota)
    ran = recon.cli("apply", "--auto-approve", "--plan", str(plan_file))
    assert ran.code == 0, ran
    assert [(r["customer"], r["status"]) for r in recon.requests()] == [("globex", "Provisioned")]


@pytest.mark.parametrize("edit", ["location", "description", "digest"])
def test_a_plan_file_whose_carried_manifest_was_edited_is_refused(recon: Recon, edit: str) -> None:
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE)
    plan_file = saved_plan(recon)
    doc = json.loads(plan_file.read_text("utf-8"))
    carried = doc["moves"][0]["manifest"]
    if edit == "location":
        carried["spec"]["toReseller"] = "fabrikam"
    elif edit == "description":
        carried["metadata"]["description"] = "changed after review"
    else:
        doc["moves"][0]["manifest_sha256"] = "0" * 64
    plan_file.write_text(json.dumps(doc), encoding="utf-8")
    ran = recon.cli("apply", "--auto-approve", "--plan", str(plan_file))
    assert ran.code == 1, ran
    assert (f"error: {plan_file}: the manifest carried for '{GLOBEX}' does not match its digest; the plan file was "
            "edited") in ran.err
    assert recon.requests() == []
    assert not recon.state.exists()


def test_a_plan_file_that_is_not_one_is_refused(recon: Recon) -> None:
    bad = recon.root / "bad.json"
    bad.write_text('{"format_version": "9.9", "moves": []}')
    ran = recon.cli("apply", "--auto-approve", "--plan", str(bad))
    assert ran.code == 1, ran
    assert f"error: {bad}: not a plan file of format 1.0" in ran.err
    ran = recon.cli("apply", "--auto-approve", "--plan", str(recon.root / "missing.json"))
    assert ran.code == 1, ran
    assert "no such plan file" in ran.err


def test_a_saved_plan_via_the_app_raises_stale_plan(recon: Recon) -> None:
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE)
    plan_file = saved_plan(recon)
    assert app.apply(recon.settings(), plan_file=str(plan_file)).ok
    with pytest.raises(StalePlan):
        app.apply(recon.settings(), plan_file=str(plan_file))


# -- invalid moves ----------------------------------------------------------------------------------------
def test_apply_applies_nothing_when_any_move_is_invalid(recon: Recon) -> None:
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE, file="01.yaml")
    recon.manifest("hooli-to-fabrikam", "hooli", "fabrikam", location="eu-west", file="02.yaml")
    recon.manifest(HOOLI, "umbrella", "northwind", services=EXCHANGE, file="03.yaml")
    before = recon.export()
    ran = recon.cli("apply", "--auto-approve", "moves")
    assert ran.code == 1, ran
    assert "error[location-mismatch]" in ran.err
    assert "error: nothing was applied: the plan has errors (see above)" in ran.err
    assert recon.export() == before
    assert not recon.state.exists()
    with pytest.raises(ReconcilerError, match="nothing was applied"):
        app.apply(recon.settings(), [str(recon.moves)])
    assert recon.export() == before


def test_apply_applies_nothing_when_a_manifest_fails_the_schema(recon: Recon) -> None:
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE, file="01.yaml")
    (recon.moves / "02.yaml").write_text("apiVersion: reconciler/v1\nkind: CustomerMove\nmetadata: {name: x}\n")
    ran = recon.cli("apply", "--auto-approve", "moves")
    assert ran.code == 1, ran
    assert "error[schema]" in ran.err
    assert recon.requests() == [] and not recon.state.exists()


def test_apply_without_auto_approve_off_a_terminal_is_refused(recon: Recon) -> None:
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE)
    ran = recon.cli("apply", "moves")
    assert ran.code == 1, ran
    assert "error: stdin is not a terminal, so apply cannot ask for approval" in ran.err
    assert recon.requests() == [] and not recon.state.exists()


def test_apply_declined_changes_nothing(recon: Recon) -> None:
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE)
    result = app.apply(recon.settings(), [str(recon.moves)], approve=lambda _: False)
    assert result.declined and not result.ok
    assert recon.requests() == [] and not recon.state.exists()


# -- resuming after a crash -------------------------------------------------------------------------------
def crashed_state(recon: Recon, name: str, request_id: str) -> bytes:
    """The state as a run killed right after journaling the request (before, or just after, submitting it)."""
    manifest = next(recon.moves.glob(f"*{name}.yaml"))
    doc = {"version": 1, "lineage": "0d3f8f8e-5a55-4c1b-9a49-6f1f0c7d2b11", "serial": 1, "tool_version": "0.1.0",
           "moves": {name: {
               "manifest": {"file": str(manifest), "sha256": digest_of(manifest), "git_commit": None},
               "customer": "globex", "from_reseller": "contoso", "to_reseller": "northwind", "status": "in-progress",
               "applied_at": None, "applied_by": None, "applied_serial": None, "customer_fingerprint": None,
               "requests": [{"id": request_id, "type": "CustomerMove", "status": "InProgress", "sub_requests": 4,
                             "failed_sub_requests": 0, "error": None, "submitted_at": None,
                             "completed_at": None}]}}}
    raw = json.dumps(doc, indent=2).encode()
    recon.state.write_bytes(raw)
    recon.state_json()  # a state reconciler itself could have written
    return raw


def test_resume_after_a_crash_before_the_request_was_submitted(recon: Recon) -> None:
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE)
    journaled = rid(recon, GLOBEX)
    crashed_state(recon, GLOBEX, journaled)
    assert recon.requests() == []
    doc = plan_json(recon)
    assert [(m["action"], m["requests"][0]["id"]) for m in doc["moves"]] == [("move", journaled)]

    ran = recon.cli("apply", "--auto-approve", "moves")
    assert ran.code == 0, ran
    assert [(r["id"], r["status"]) for r in recon.requests()] == [(journaled, "Provisioned")]
    st = recon.state_json()
    rec = st["moves"][GLOBEX]
    assert rec["status"] == "applied"
    assert [(r["id"], r["status"]) for r in rec["requests"]] == [(journaled, "Provisioned")]
    assert recon.customer("globex")["parent"] == "northwind"
    assert st["lineage"] == "0d3f8f8e-5a55-4c1b-9a49-6f1f0c7d2b11"



def submitted_behind_apply(recon: Recon, name: str) -> tuple[str, Request]:
    """The platform executes attempt 1 of `name` as if apply had submitted it, then crashed."""
    journaled = rid(recon, name)
    order = app.plan([str(recon.moves)], recon.settings()).plan.moves[0].order
    assert order is not None
    p = SqlitePlatform.open(recon.url)
    try:
        return journaled, p.submit(journaled, order)
    finally:
        p.close()

def test_resume_keeps_the_journaled_id_whatever_it_is(recon: Recon) -> None:
    """The journaled id is the one resumed, even if it is not the attempt-1 id (e.g. written by another version)."""
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE)
    crashed_state(recon, GLOBEX, "rq-" + "7" * 24)
    assert recon.cli("apply", "--auto-approve", "moves").code == 0
    assert [(r["id"], r["status"]) for r in recon.requests()] == [("rq-" + "7" * 24, "Provisioned")]


def test_resume_after_a_crash_once_the_platform_had_provisioned_it(recon: Recon) -> None:
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE)
    journaled, done = submitted_behind_apply(recon, GLOBEX)
    crashed_state(recon, GLOBEX, journaled)

    ran = recon.cli("apply", "--auto-approve", "moves")
    assert ran.code == 0, ran
    assert "requests submitted" not in ran.out or "0 requests submitted" in ran.out
    assert [(r["id"], r["status"]) for r in recon.requests()] == [(journaled, "Provisioned")]
    st = recon.state_json()
    rec = st["moves"][GLOBEX]
    assert rec["status"] == "applied"
    assert rec["applied_at"] == done.completed_at
    assert [(r["id"], r["status"], r["sub_requests"], r["submitted_at"], r["completed_at"])
            for r in rec["requests"]] == [(journaled, "Provisioned", 4, done.submitted_at, done.completed_at)]
    assert [(m["action"], m["reason"]) for m in plan_json(recon)["moves"]] == [("noop", "applied")]


def test_resume_after_a_crash_once_the_platform_had_failed_it(recon: Recon) -> None:
    recon.manifest(ACME, "acme", "northwind",
                   services={**EXCHANGE, "sharepoint": {"plan": "sp-basic"}})
    journaled, _ = submitted_behind_apply(recon, ACME)
    raw = json.loads(crashed_state(recon, ACME, journaled))
    raw["moves"][ACME]["customer"] = "acme"
    recon.state.write_text(json.dumps(raw))

    # The refresh records the failure; the still-held user makes the next attempt fail too.
    second = rid(recon, ACME)
    ran = recon.cli("apply", "--auto-approve", "moves")
    assert ran.code == 1, ran
    st = recon.state_json()
    assert [(r["id"], r["status"]) for r in st["moves"][ACME]["requests"]] == [
        (journaled, "Failed"), (second, "Failed")]
    assert [r["id"] for r in recon.requests()] == [journaled, second]


# -- status -----------------------------------------------------------------------------------------------
def test_status_refreshes_request_statuses_into_the_state(recon: Recon) -> None:
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE)
    journaled, done = submitted_behind_apply(recon, GLOBEX)
    crashed_state(recon, GLOBEX, journaled)

    ran = recon.cli("status", "--format", "json")
    assert ran.code == 0, ran
    out = json.loads(ran.out)
    assert list(out) == ["moves"] and list(out["moves"]) == [GLOBEX]
    st = recon.state_json()
    assert out["moves"][GLOBEX] == st["moves"][GLOBEX]  # records as in the state file, which was refreshed
    rec = st["moves"][GLOBEX]
    assert rec["status"] == "applied"
    assert (rec["requests"][0]["status"], rec["requests"][0]["completed_at"]) == ("Provisioned", done.completed_at)
    assert st["serial"] == 2

    # Nothing left to refresh: status does not write.
    before = recon.state_bytes()
    ran = recon.cli("status")
    assert ran.code == 0, ran
    assert f"{GLOBEX}: applied  globex: contoso → northwind  (1 request; last {journaled} Provisioned)" in ran.out
    assert recon.state_bytes() == before


def test_status_of_named_moves(recon: Recon) -> None:
    recon.copy_moves()
    assert recon.cli("apply", "--auto-approve", "moves").code == 1
    ran = recon.cli("status", ACME, "--format", "json")
    assert ran.code == 0, ran  # whatever the requests' outcomes
    out = json.loads(ran.out)
    assert list(out["moves"]) == [ACME]
    assert out["moves"][ACME]["status"] == "failed"
    assert out["moves"][ACME]["requests"][0]["error"] == HOLD
    text = recon.cli("status", ACME)
    assert text.code == 0
    assert f"    error: {HOLD}" in text.out

    ran = recon.cli("status", "no-such-move")
    assert ran.code == 1, ran
    assert "error: no recorded move named 'no-such-move'" in ran.err


def test_status_without_a_state(recon: Recon) -> None:
    ran = recon.cli("status", "--format", "json")
    assert ran.code == 0, ran
    assert json.loads(ran.out) == {"moves": {}}
    assert not recon.state.exists()


def test_status_leaves_a_request_still_in_flight_as_it_is(recon: Recon) -> None:
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE)
    journaled = rid(recon, GLOBEX)
    recon.edit_platform(lambda doc: doc.update(requests=[
        {"id": journaled, "type": "CustomerMove", "customer": "globex", "status": "InProgress"}]))
    raw = crashed_state(recon, GLOBEX, journaled)
    ran = recon.cli("status", "--format", "json")
    assert ran.code == 0, ran
    assert json.loads(ran.out)["moves"][GLOBEX]["status"] == "in-progress"
    assert recon.state_bytes() == raw


# -- a customer found at the destination after a failure or a crash --------------------------------------
def test_a_failed_move_found_already_at_destination_is_adopted(recon: Recon) -> None:
    recon.manifest(ACME, "acme", "northwind", services={**EXCHANGE, "sharepoint": {"plan": "sp-basic"}})
    assert recon.cli("apply", "--auto-approve", "moves").code == 1
    clear_hold(recon)
    order = app.plan([str(recon.moves)], recon.settings()).plan.moves[0].order
    assert order is not None
    p = SqlitePlatform.open(recon.url)
    try:
        assert p.submit("rq-" + "1" * 24, order).status == "Provisioned"  # an operator finished it by hand
    finally:
        p.close()
    assert [(m["action"], m["reason"]) for m in plan_json(recon)["moves"]] == [("noop", "already-at-destination")]
    ran = recon.cli("apply", "--auto-approve", "moves")
    assert ran.code == 0, ran
    assert statuses(recon.state_json()) == {ACME: "adopted"}


def test_an_in_progress_move_found_already_at_destination_is_resolved(recon: Recon) -> None:
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE)
    order = app.plan([str(recon.moves)], recon.settings()).plan.moves[0].order
    assert order is not None
    crashed_state(recon, GLOBEX, rid(recon, GLOBEX))  # killed before its request was submitted
    p = SqlitePlatform.open(recon.url)
    try:
        assert p.submit("rq-" + "1" * 24, order).status == "Provisioned"  # and then moved by other means
    finally:
        p.close()
    ran = recon.cli("apply", "--auto-approve", "moves")
    assert ran.code == 0, ran
    assert statuses(recon.state_json()) == {GLOBEX: "adopted"}
    assert [r["id"] for r in recon.requests()] == ["rq-" + "1" * 24]


def test_apply_that_only_records_a_finished_request_says_it_wrote_the_state(recon: Recon) -> None:
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE)
    journaled, _ = submitted_behind_apply(recon, GLOBEX)
    before = crashed_state(recon, GLOBEX, journaled)
    result = app.apply(recon.settings(), [str(recon.moves)])
    assert recon.state_bytes() != before  # the outcome was recorded
    crashed_state(recon, GLOBEX, journaled)
    ran = recon.cli("apply", "--auto-approve", "moves")
    assert ran.code == 0, ran
    assert recon.state_bytes() != before
    assert "the state file was left as it was" not in ran.out
    assert "Nothing to apply; recorded the outcome of requests that finished since the last run." in ran.out
    assert result.state_written


# -- issue 9, item 1: "applied" only when the platform agrees ---------------------------------------------
def test_a_move_reapplied_with_a_lost_state_after_a_move_back_really_moves_the_customer(recon: Recon) -> None:
    """Apply, move the customer back with another manifest, lose the state, apply the first manifest again: the
    same name, digest and attempt must not find the old request and call it applied."""
    recon.manifest(GLOBEX, "globex", "northwind", services=EXCHANGE)
    assert recon.cli("apply", "--auto-approve", str(recon.moves)).code == 0
    first = recon.requests("globex")
    (recon.moves / f"{GLOBEX}.yaml").rename(recon.root / "first.yaml")
    recon.manifest("globex-back", "globex", "contoso",
                   services={"hosted-exchange": {"plan": "exchange-basic", "sals": {"nw-standard": "standard"}}})
    assert recon.cli("apply", "--auto-approve", str(recon.moves)).code == 0
    assert recon.customer("globex")["parent"] == "contoso"
    for p in (recon.state, recon.backup):
        p.unlink()  # the state is lost
    (recon.moves / "globex-back.yaml").unlink()
    (recon.root / "first.yaml").rename(recon.moves / f"{GLOBEX}.yaml")
    ran = recon.cli("apply", "--auto-approve", str(recon.moves))
    assert ran.code == 0, ran
    assert "Apply complete: 1 applied, 0 adopted, 0 failed, 1 request submitted." in ran.out, ran.out
    assert recon.customer("globex")["parent"] == "northwind"  # really moved: a new request ran
    again = recon.requests("globex")
    assert len(again) == 3 and again[-1]["id"] not in {r["id"] for r in first}
    assert [(m["action"], m["reason"]) for m in plan_json(recon)["moves"]] == [("noop", "applied")]


def test_a_provisioned_request_that_did_not_move_the_customer_is_not_applied(recon: Recon) -> None:
    """The verdict apply and status record: a request the platform calls Provisioned proves nothing while the
    platform shows the customer elsewhere (or with other subscriptions than the move set)."""
    from reconciler.model import Request
    from reconciler.state import ManifestRef, MoveRecord

    rec = MoveRecord(manifest=ManifestRef(file="m.yaml", sha256="0" * 64), customer="globex",
                     from_reseller="contoso", to_reseller="northwind", status="in-progress")
    done = Request("rq-0123", "CustomerMove", "globex", "Provisioned")
    p = SqlitePlatform.open(recon.url)
    try:
        ok, why, cust = applier.verdict(p, rec, done)
        assert (ok, why) == (False, "the platform reports request rq-0123 Provisioned, but shows globex under "
                                    "contoso, not northwind: the move did not happen")
        assert cust is not None and cust.parent == "contoso"
        moves = recon.copy_moves()
        order = app.plan([str(moves / "01-globex-to-northwind.yaml")], recon.settings()).plan.moves[0].order
        assert order is not None
        p.submit("rq-real", order)
        assert applier.verdict(p, rec, done, order)[:2] == (True, None)
        other = replace(order, subscriptions={})
        assert applier.verdict(p, rec, done, other)[:2] == (
            False, "the platform reports request rq-0123 Provisioned, but globex's subscriptions differ from what "
                   "the move set: the move did not happen as planned")
    finally:
        p.close()
