"""The embedded platform's provisioning engine (SqlitePlatform.submit) and export/init round trips."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from reconciler.model import MoveOrder, Subscription
from reconciler.platforms.sqlite import SqlitePlatform

if TYPE_CHECKING:
    from conftest import Recon

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@pytest.fixture
def engine(recon: Recon) -> Any:
    p = SqlitePlatform.open(recon.url)
    yield p
    p.close()


def globex_order(to: str = "northwind") -> MoveOrder:
    return MoveOrder(customer="globex", to_reseller=to,
                     subscriptions={"hosted-exchange": Subscription("nw-exchange", "nw-standard", {"archive": True})},
                     sal_map={"hosted-exchange": {"standard": "nw-standard", "premium": "premium"}})


def acme_order() -> MoveOrder:
    return MoveOrder(customer="acme", to_reseller="northwind",
                     subscriptions={"hosted-exchange": Subscription("nw-exchange", "nw-standard", {}),
                                    "sharepoint": Subscription("sp-basic", "standard", {})},
                     sal_map={"hosted-exchange": {"standard": "nw-standard", "premium": "premium"},
                              "sharepoint": {"standard": "standard"}})


def without_requests(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "requests"}


def test_submit_executes_a_customer_move(recon: Recon, engine: SqlitePlatform) -> None:
    before = engine.customers(["globex"])["globex"]
    req = engine.submit("rq-000000000000000000000001", globex_order())

    assert (req.id, req.type, req.customer, req.status, req.error) == (
        "rq-000000000000000000000001", "CustomerMove", "globex", "Provisioned", None)
    assert (req.sub_requests, req.failed_sub_requests) == (4, 0)  # 1 + 1 service + 2 users
    assert req.submitted_at is not None and TIMESTAMP.match(req.submitted_at)
    assert req.completed_at is not None and TIMESTAMP.match(req.completed_at)

    after = engine.customers(["globex"])["globex"]
    assert after.parent == "northwind"
    assert after.subscriptions == {"hosted-exchange": Subscription("nw-exchange", "nw-standard", {"archive": True})}
    assert after != before
    users = {u.id: {s: (x.sal, x.overrides) for s, x in u.services.items()} for u in engine.users(["globex"])["globex"]}
    assert users == {"hank@globex.example": {"hosted-exchange": ("nw-standard", {})},
                     "mona@globex.example": {"hosted-exchange": ("premium", {"activeSync": False})}}
    assert engine.request(req.id) == req
    assert engine.requests_of(["globex"], pending_only=True) == {}
    # nothing else moved
    assert recon.customer("hooli")["parent"] == "contoso"


def test_a_held_user_fails_the_whole_request_and_changes_nothing(recon: Recon, engine: SqlitePlatform) -> None:
    before = recon.export()
    req = engine.submit("rq-000000000000000000000002", acme_order())

    assert req.status == "Failed"
    assert req.error == "user dave@acme.example cannot be provisioned: mailbox on litigation hold"
    assert (req.sub_requests, req.failed_sub_requests) == (7, 1)  # 1 + 2 services + 4 users
    assert req.completed_at is not None
    after = recon.export()
    assert without_requests(after) == without_requests(before)  # alice, bob, carol were not moved either
    assert [(r["id"], r["status"]) for r in after["requests"]] == [("rq-000000000000000000000002", "Failed")]


def test_every_held_user_is_named(recon: Recon) -> None:
    def hold_two(doc: dict[str, Any]) -> None:
        for u in recon.customer("acme", doc)["users"]:
            if u["id"] == "alice@acme.example":
                u["hold"] = "unpaid invoice"
    recon.edit_platform(hold_two)
    p = SqlitePlatform.open(recon.url)
    try:
        req = p.submit("rq-000000000000000000000003", acme_order())
    finally:
        p.close()
    assert req.status == "Failed"
    assert req.error == ("user alice@acme.example cannot be provisioned: unpaid invoice; "
                         "user dave@acme.example cannot be provisioned: mailbox on litigation hold")
    assert req.failed_sub_requests == 2


def test_a_known_request_id_returns_the_existing_request_and_does_not_execute_twice(
        recon: Recon, engine: SqlitePlatform) -> None:
    first = engine.submit("rq-000000000000000000000004", globex_order())
    before = engine.customers(["globex"])["globex"]
    # The same id again, even with another order: the existing request, nothing executed.
    again = engine.submit("rq-000000000000000000000004", globex_order(to="contoso"))
    assert again == first
    assert engine.customers(["globex"])["globex"].parent == "northwind"
    assert engine.customers(["globex"])["globex"] == before
    assert [r["id"] for r in recon.requests()] == ["rq-000000000000000000000004"]
    # ... also through another connection (another process would have one of its own).
    other = SqlitePlatform.open(recon.url)
    try:
        assert other.submit("rq-000000000000000000000004", globex_order(to="contoso")) == first
    finally:
        other.close()
    assert len(recon.requests()) == 1


def test_a_known_failed_request_stays_failed(recon: Recon, engine: SqlitePlatform) -> None:
    failed = engine.submit("rq-000000000000000000000005", acme_order())
    recon.edit_platform(lambda doc: [u.update(hold=None) for u in recon.customer("acme", doc)["users"]])
    p = SqlitePlatform.open(recon.url)
    try:
        assert p.submit("rq-000000000000000000000005", acme_order()) == failed
        assert p.customers(["acme"])["acme"].parent == "contoso"
        # A new attempt under a new id goes through once the hold is gone.
        ok = p.submit("rq-000000000000000000000006", acme_order())
        assert (ok.status, ok.sub_requests) == ("Provisioned", 7)
        assert p.customers(["acme"])["acme"].parent == "northwind"
    finally:
        p.close()


@pytest.mark.parametrize(("customer", "subs", "users", "expected"), [
    ("umbrella", {"hosted-exchange": Subscription("nw-exchange", "nw-standard", {})}, 1, 3),
    ("acme", {"hosted-exchange": Subscription("nw-exchange", "nw-standard", {}),
              "sharepoint": Subscription("sp-basic", "standard", {})}, 4, 7),
])
def test_sub_requests_are_one_plus_services_plus_users(recon: Recon, customer: str,
                                                       subs: dict[str, Subscription], users: int,
                                                       expected: int) -> None:
    recon.edit_platform(lambda doc: [u.update(hold=None) for u in recon.customer("acme", doc)["users"]])
    p = SqlitePlatform.open(recon.url)
    try:
        assert len(p.users([customer]).get(customer, [])) == users
        req = p.submit("rq-000000000000000000000007", MoveOrder(customer, "northwind", subs, {}))
    finally:
        p.close()
    assert (req.status, req.sub_requests) == ("Provisioned", expected)


def test_a_customer_without_users(recon: Recon) -> None:
    def add(doc: dict[str, Any]) -> None:
        doc["customers"].append({"id": "empty", "name": "Empty", "location": "eu-west", "parent": "contoso",
                                 "services": {"hosted-exchange": {"plan": "exchange-basic", "sal": "standard"},
                                              "sharepoint": {"plan": "sp-basic", "sal": "standard"}},
                                 "users": []})
    recon.edit_platform(add)
    p = SqlitePlatform.open(recon.url)
    try:
        req = p.submit("rq-000000000000000000000008", MoveOrder(
            "empty", "northwind", {"hosted-exchange": Subscription("nw-exchange", "nw-standard", {}),
                                   "sharepoint": Subscription("sp-basic", "standard", {})}, {}))
    finally:
        p.close()
    assert (req.status, req.sub_requests, req.failed_sub_requests) == ("Provisioned", 3, 0)


@pytest.mark.parametrize(("order", "error"), [
    (MoveOrder("ghost", "northwind", {}, {}), "customer ghost does not exist"),
    (MoveOrder("globex", "nowhere", {}, {}), "reseller nowhere does not exist"),
    (MoveOrder("globex", "initech", {}, {}), "initech"),  # a customer, not a reseller
    (MoveOrder("globex", "fabrikam", {}, {}), "fabrikam is in us-east, globex in eu-west"),
])
def test_the_engine_refuses_what_it_cannot_do(recon: Recon, engine: SqlitePlatform, order: MoveOrder,
                                              error: str) -> None:
    before = recon.export()
    req = engine.submit("rq-000000000000000000000009", order)
    assert (req.status, req.failed_sub_requests) == ("Failed", 1)
    assert req.error is not None and error in req.error
    assert without_requests(recon.export()) == without_requests(before)


def test_requests_appear_in_platform_export(recon: Recon, engine: SqlitePlatform) -> None:
    ok = engine.submit("rq-00000000000000000000000a", globex_order())
    bad = engine.submit("rq-00000000000000000000000b", acme_order())
    ran = recon.cli("platform", "export", "--format", "json")
    assert ran.code == 0, ran
    requests = json.loads(ran.out)["requests"]
    # what the move replaced: enough to move the customer back (a revert), never needed by a failed one
    replaced = requests[0].pop("replaced")
    assert (replaced["parent"], sorted(replaced["users"])) == ("contoso", ["hank@globex.example"])  # mona keeps premium
    assert "replaced" not in requests[1]
    assert requests == [
        {"id": ok.id, "type": "CustomerMove", "customer": "globex", "status": "Provisioned", "error": None,
         "sub_requests": 4, "failed_sub_requests": 0, "submitted_at": ok.submitted_at,
         "completed_at": ok.completed_at, "order": globex_order().to_json()},
        {"id": bad.id, "type": "CustomerMove", "customer": "acme", "status": "Failed", "error": bad.error,
         "sub_requests": 7, "failed_sub_requests": 1, "submitted_at": bad.submitted_at,
         "completed_at": bad.completed_at, "order": acme_order().to_json()},
    ]
    # The YAML export says the same.
    ran_yaml = recon.cli("platform", "export")
    assert ran_yaml.code == 0, ran_yaml
    assert yaml.safe_load(ran_yaml.out) == json.loads(ran.out)


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_export_then_init_force_gives_the_same_platform_back(recon: Recon, engine: SqlitePlatform,
                                                             tmp_path: Path, fmt: str) -> None:
    engine.submit("rq-00000000000000000000000c", globex_order())
    engine.submit("rq-00000000000000000000000d", acme_order())
    first = recon.cli("platform", "export", "--format", fmt)
    assert first.code == 0, first
    exported = tmp_path / f"export.{fmt}"
    exported.write_text(first.out, encoding="utf-8")
    digests = engine.customers([c["id"] for c in recon.export()["customers"]])

    # Onto the same database (--force) ...
    ran = recon.cli("platform", "init", "--force", "--seed", str(exported), "--platform", recon.url)
    assert ran.code == 0, ran
    assert "8 customers, 10 users, 2 requests" in ran.out
    again = recon.cli("platform", "export", "--format", fmt)
    assert again.code == 0, again
    assert again.out == first.out
    p = SqlitePlatform.open(recon.url)
    try:
        assert p.customers(digests) == digests
        assert p.request("rq-00000000000000000000000d") == engine.request("rq-00000000000000000000000d")
    finally:
        p.close()

    # ... and into a new one.
    other = f"sqlite:///{tmp_path / 'copy.db'}"
    ran = recon.cli("platform", "init", "--seed", str(exported), "--platform", other)
    assert ran.code == 0, ran
    copy = recon.cli("platform", "export", "--format", fmt, "--platform", other)
    assert copy.out == first.out


def test_init_refuses_to_replace_without_force(recon: Recon, tmp_path: Path) -> None:
    before = recon.export()
    ran = recon.cli("platform", "init", "--seed", str(recon.root / "nothing.yaml"), "--platform", recon.url)
    assert ran.code == 1
    assert f"error: a platform already exists at {recon.db}" in ran.err
    assert "hint: pass --force to replace it" in ran.err
    assert recon.export() == before


def test_a_seeded_in_flight_request_is_pending(recon: Recon, engine: SqlitePlatform) -> None:
    def seed_request(doc: dict[str, Any]) -> None:
        doc["requests"] = [{"id": "rq-old-1", "type": "CustomerMove", "customer": "hooli", "status": "InProgress"}]
    recon.edit_platform(seed_request)
    p = SqlitePlatform.open(recon.url)
    try:
        pending = p.requests_of(["hooli", "globex"], pending_only=True)
        assert {c: [r.id for r in rs] for c, rs in pending.items()} == {"hooli": ["rq-old-1"]}
        assert p.request("rq-old-1") is not None
    finally:
        p.close()


def test_the_database_is_real_sqlite(recon: Recon, engine: SqlitePlatform) -> None:
    """What the engine reports is what the database holds (read with sqlite3 itself)."""
    engine.submit("rq-00000000000000000000000e", globex_order())
    con = sqlite3.connect(recon.db)
    try:
        rows = con.execute("SELECT id, customer, status FROM requests").fetchall()
        parent = con.execute("SELECT parent FROM customers WHERE id = 'globex'").fetchone()
    finally:
        con.close()
    assert rows == [("rq-00000000000000000000000e", "globex", "Provisioned")]
    assert parent == ("northwind",)
