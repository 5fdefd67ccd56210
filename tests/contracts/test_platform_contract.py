"""The Platform contract, written once and run against every provider (Terraform's TestBackendStates).

Providers: `sqlite` (the embedded platform), `http` (the same database served by `reconcile platform
serve` on loopback, read through the built-in HTTP provider) and `fake` (tests/fakeplatform.py, the
in-memory peer other tests may use in its place: passing here is what makes it a peer, not a mock).
Every provider starts from the same seed; a request may come back non-final (the served platform is
asynchronous), so the tests poll it, bounded, the way apply does.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import APPLY_SEED
from fakeplatform import FakePlatform
from peers import TOKEN, Served, http_available

from reconciler.model import MoveOrder, Request, Subscription
from reconciler.platforms import open_platform
from reconciler.platforms.base import Exportable, Platform
from reconciler.platforms.sqlite import SqlitePlatform, init

PROVIDERS = ("sqlite", "http", "fake")
SETTLE_SECONDS = 30.0

Make = Callable[[Path], Platform]

GLOBEX = MoveOrder("globex", "northwind",
                   {"hosted-exchange": Subscription("nw-exchange", "nw-standard", {"archive": True})},
                   {"hosted-exchange": {"standard": "nw-standard", "premium": "premium"}})
HOOLI = MoveOrder("hooli", "northwind", {"hosted-exchange": Subscription("nw-exchange", "nw-standard", {})},
                  {"hosted-exchange": {"standard": "nw-standard"}})
ACME = MoveOrder("acme", "northwind",  # dave@acme.example is on hold: the engine must fail it whole
                 {"hosted-exchange": Subscription("nw-exchange", "nw-standard", {}),
                  "sharepoint": Subscription("sp-basic", "standard", {})},
                 {"hosted-exchange": {"standard": "nw-standard", "premium": "premium"},
                  "sharepoint": {"standard": "standard"}})

# Requests imported with a seed keep their status on every provider (a served platform's workers run only
# the requests it accepted itself).
SEEDED_REQUESTS = [
    {"id": "old-1", "type": "CustomerMove", "customer": "umbrella", "status": "Provisioned",
     "sub_requests": 2, "submitted_at": "2024-01-01T00:00:00Z", "completed_at": "2024-01-01T00:00:05Z"},
    {"id": "old-2", "type": "CustomerMove", "customer": "umbrella", "status": "Failed", "error": "boom",
     "sub_requests": 2, "failed_sub_requests": 1, "submitted_at": "2024-01-02T00:00:00Z",
     "completed_at": "2024-01-02T00:00:05Z"},
    {"id": "old-3", "type": "CustomerMove", "customer": "umbrella", "status": "InProgress",
     "submitted_at": "2024-01-03T00:00:00Z"},
    {"id": "old-4", "type": "CustomerMove", "customer": "initech", "status": "Requested",
     "submitted_at": "2024-01-04T00:00:00Z"},
]


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The apply fixture platform (tests/fixtures/apply/platform.yaml) plus SEEDED_REQUESTS, as JSON."""
    doc = yaml.safe_load(APPLY_SEED.read_text("utf-8"))
    doc["requests"] = SEEDED_REQUESTS
    p = tmp_path_factory.mktemp("contract-seed") / "seed.json"
    p.write_text(json.dumps(doc), encoding="utf-8")
    return p


@pytest.fixture(params=PROVIDERS)
def make(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Make]:
    """make(seed) -> a fresh platform of the provider under test, holding that seed; closed afterwards."""
    kind: str = request.param
    opened: list[Platform] = []
    servers: list[Served] = []
    if kind == "http":
        why = http_available()
        if why:
            pytest.skip(why)
        monkeypatch.setenv("RECONCILE_TOKEN", TOKEN)

    def _make(seed: Path) -> Platform:
        n = len(opened)
        platform: Platform
        if kind == "fake":
            platform = FakePlatform.from_seed(seed)
        else:
            url = f"sqlite:///{tmp_path / f'p{n}.db'}"
            init(url, str(seed))
            if kind == "sqlite":
                platform = SqlitePlatform.open(url)
            else:
                served = Served(url, tmp_path / f"server{n}")
                servers.append(served)
                platform = open_platform(served.start(), {})
        opened.append(platform)
        return platform

    try:
        yield _make
    finally:
        for p in opened:
            p.close()
        for s in servers:
            s.stop()


@pytest.fixture
def platform(make: Make, seed: Path) -> Platform:
    return make(seed)


def settle(platform: Platform, request_id: str, timeout: float = SETTLE_SECONDS) -> Request:
    """Poll the request until it is final (Provisioned or Failed), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        got = platform.request(request_id)
        assert got is not None, f"the platform lost request {request_id}"
        if got.final:
            return got
        assert time.monotonic() < deadline, f"request {request_id} still {got.status} after {timeout}s"
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def exported(platform: Platform) -> dict[str, Any]:
    assert isinstance(platform, Exportable)
    return platform.export()


# -- reads --------------------------------------------------------------------------------------
def test_catalog(platform: Platform) -> None:
    cat = platform.catalog()
    assert list(cat) == ["hosted-exchange", "sharepoint"]
    ex = cat["hosted-exchange"]
    assert ex.name == "Hosted Exchange"
    assert {n: (p.type, p.sensitive) for n, p in ex.properties.items()} == {
        "mailboxQuotaMB": ("integer", False), "activeSync": ("boolean", False), "archive": ("boolean", False),
        "journalPassword": ("string", True)}
    assert set(cat["sharepoint"].properties) == {"storageMB", "externalSharing"}


def test_customers_by_ids_leave_missing_ids_out(platform: Platform) -> None:
    got = platform.customers(["acme", "no-such-customer", "northwind", "globex"])
    assert set(got) == {"acme", "northwind", "globex"}
    acme = got["acme"]
    assert (acme.name, acme.location, acme.parent, acme.is_reseller) == ("Acme Ltd", "eu-west", "contoso", False)
    assert {s: (x.plan, x.sal, x.overrides) for s, x in acme.subscriptions.items()} == {
        "hosted-exchange": ("exchange-basic", "standard", {}), "sharepoint": ("sp-basic", "standard", {})}
    assert got["globex"].subscriptions["hosted-exchange"].overrides == {"archive": True}
    nw = got["northwind"]
    assert nw.is_reseller and nw.parent is None and nw.offerings is not None
    off = nw.offerings["hosted-exchange"]
    assert off.plans == ("nw-exchange",)
    assert off.sals["nw-standard"] == {"mailboxQuotaMB": 4096, "activeSync": True, "archive": False}
    assert platform.customers([]) == {}
    assert platform.customers(["nobody", "nobody-else"]) == {}


def test_users_in_one_batch_in_platform_order(platform: Platform) -> None:
    got = platform.users(["initech", "contoso", "acme"])
    assert set(got) == {"initech", "contoso", "acme"}
    assert got["contoso"] == []  # a customer without users (a reseller) is there, empty
    assert [u.id for u in got["acme"]] == ["alice@acme.example", "bob@acme.example", "carol@acme.example",
                                           "dave@acme.example"]
    assert [u.id for u in got["initech"]] == ["peter@initech.example", "milton@initech.example"]
    alice, bob, carol, dave = got["acme"]
    assert (alice.services["hosted-exchange"].sal, alice.hold) == ("premium", None)
    assert set(bob.services) == {"hosted-exchange", "sharepoint"}
    assert carol.services["hosted-exchange"].overrides == {"mailboxQuotaMB": 3000}
    assert dave.hold == "mailbox on litigation hold"
    assert platform.users([]) == {}
    # Each user's services in name order, whatever the provider (the plan lists them in this order)
    assert all(list(u.services) == sorted(u.services) for us in got.values() for u in us)


def test_usage_per_reseller_per_service(platform: Platform) -> None:
    got = platform.usage(["contoso", "northwind", "fabrikam"])
    # contoso: acme 4 + globex 2 + hooli 1 + umbrella 1 exchange users, bob's sharepoint; northwind: initech 2
    assert got == {"contoso": {"hosted-exchange": 8, "sharepoint": 1}, "northwind": {"hosted-exchange": 2},
                   "fabrikam": {}}


def test_requests_of_in_submission_order_and_pending_only(platform: Platform) -> None:
    got = platform.requests_of(["umbrella", "initech", "acme"])
    assert set(got) <= {"umbrella", "initech", "acme"} and not got.get("acme")
    assert [(r.id, r.status) for r in got["umbrella"]] == [
        ("old-1", "Provisioned"), ("old-2", "Failed"), ("old-3", "InProgress")]
    assert [(r.id, r.status) for r in got["initech"]] == [("old-4", "Requested")]
    old2 = got["umbrella"][1]
    assert (old2.error, old2.sub_requests, old2.failed_sub_requests) == ("boom", 2, 1)
    assert (old2.submitted_at, old2.completed_at) == ("2024-01-02T00:00:00Z", "2024-01-02T00:00:05Z")
    pending = platform.requests_of(["umbrella", "initech", "acme"], pending_only=True)
    assert {c: [r.id for r in rs] for c, rs in pending.items() if rs} == {"umbrella": ["old-3"],
                                                                         "initech": ["old-4"]}
    assert not any(platform.requests_of([]).values())


def test_request_by_id_and_unknown_is_none(platform: Platform) -> None:
    got = platform.request("old-2")
    assert got is not None and (got.customer, got.status, got.type) == ("umbrella", "Failed", "CustomerMove")
    assert platform.request("no-such-request") is None


def test_search_for_did_you_mean(platform: Platform) -> None:
    assert platform.search("acm") == ["acme"]
    assert platform.search("globx")[0] == "globex"
    assert platform.search("zzzzzz") == []
    assert len(platform.search("a", limit=1)) <= 1


# -- the engine -----------------------------------------------------------------------------------
def test_a_submitted_request_becomes_final_and_moves_the_customer(platform: Platform) -> None:
    first = platform.submit("rq-globex-1", GLOBEX)
    assert (first.id, first.customer, first.type) == ("rq-globex-1", "globex", "CustomerMove")
    assert first.status in ("Requested", "InProgress", "Provisioned")
    done = settle(platform, "rq-globex-1")
    assert done.status == "Provisioned" and done.error is None
    assert done.sub_requests == 1 + 1 + 2 and done.failed_sub_requests == 0  # the move, a subscription, 2 users
    assert done.submitted_at and done.completed_at
    globex = platform.customers(["globex"])["globex"]
    assert globex.parent == "northwind"
    assert globex.subscriptions["hosted-exchange"] == Subscription("nw-exchange", "nw-standard", {"archive": True})
    hank, mona = platform.users(["globex"])["globex"]
    assert hank.services["hosted-exchange"].sal == "nw-standard"
    assert mona.services["hosted-exchange"].sal == "premium"  # mapped onto itself
    assert mona.services["hosted-exchange"].overrides == {"activeSync": False}
    assert platform.usage(["northwind"])["northwind"] == {"hosted-exchange": 4}
    assert [r.id for r in platform.requests_of(["globex"])["globex"]] == ["rq-globex-1"]


def test_submit_is_idempotent_by_request_id(platform: Platform) -> None:
    platform.submit("rq-hooli-1", HOOLI)
    again = platform.submit("rq-hooli-1", HOOLI)  # a retry, maybe while the first is still running
    assert again.id == "rq-hooli-1"
    first = settle(platform, "rq-hooli-1")
    later = platform.submit("rq-hooli-1", HOOLI)  # a retry after it ran: no second execution
    assert later.final and later.status == first.status == "Provisioned"
    assert later.completed_at == first.completed_at
    assert [r.id for r in platform.requests_of(["hooli"])["hooli"]] == ["rq-hooli-1"]
    assert platform.customers(["hooli"])["hooli"].parent == "northwind"
    if isinstance(platform, Exportable):  # what it replaced is still the first run's: contoso, not northwind
        (rq,) = [r for r in platform.export()["requests"] if r["id"] == "rq-hooli-1"]
        assert rq["replaced"]["parent"] == "contoso"
        assert rq["replaced"]["users"] == {"gavin@hooli.example": {"hosted-exchange": "standard"}}


def test_a_held_user_fails_the_whole_request_and_changes_nothing(platform: Platform) -> None:
    before = exported(platform)
    platform.submit("rq-acme-1", ACME)
    done = settle(platform, "rq-acme-1")
    assert done.status == "Failed"
    assert done.error == "user dave@acme.example cannot be provisioned: mailbox on litigation hold"
    assert (done.sub_requests, done.failed_sub_requests) == (1 + 2 + 4, 1)
    after = exported(platform)
    assert after["customers"] == before["customers"]  # atomic: no user, subscription or parent changed
    assert after["requests"][:-1] == before["requests"]
    assert platform.customers(["acme"])["acme"].parent == "contoso"
    assert [u.services["hosted-exchange"].sal for u in platform.users(["acme"])["acme"]] == [
        "premium", "standard", "standard", "standard"]


@pytest.mark.parametrize(("order", "error"), [
    (MoveOrder("nobody", "northwind", {}, {}), "customer nobody does not exist"),
    (MoveOrder("hooli", "nowhere", {}, {}), "reseller nowhere does not exist"),
    (MoveOrder("hooli", "globex", {}, {}), "globex is not a reseller"),
    (MoveOrder("hooli", "fabrikam", {}, {}), "fabrikam is in us-east, hooli in eu-west"),
])
def test_refusals_are_failed_requests(platform: Platform, order: MoveOrder, error: str) -> None:
    platform.submit("rq-refused", order)
    done = settle(platform, "rq-refused")
    assert (done.status, done.error, done.failed_sub_requests) == ("Failed", error, 1)


# -- export ---------------------------------------------------------------------------------------
def test_export_round_trips_through_a_seed(make: Make, platform: Platform, tmp_path: Path) -> None:
    platform.submit("rq-globex-1", GLOBEX)
    platform.submit("rq-acme-1", ACME)
    settle(platform, "rq-globex-1")
    settle(platform, "rq-acme-1")
    doc = exported(platform)
    assert [r["id"] for r in doc["requests"]][-2:] == ["rq-globex-1", "rq-acme-1"]
    moved = next(r for r in doc["requests"] if r["id"] == "rq-globex-1")
    assert MoveOrder.from_json(moved["order"]) == GLOBEX
    assert moved["replaced"]["parent"] == "contoso"
    again = tmp_path / "exported.json"
    again.write_text(json.dumps(doc), encoding="utf-8")
    assert exported(make(again)) == doc


# -- one outcome, every provider ------------------------------------------------------------------
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def outcome(platform: Platform) -> dict[str, Any]:
    """The same scenario on a provider, as an export without the clock (submitted_at, completed_at)."""
    for rid, order in (("s-1", GLOBEX), ("s-2", ACME), ("s-3", HOOLI), ("s-4", GLOBEX)):
        platform.submit(rid, order)
        settle(platform, rid)
    doc = exported(platform)
    for r in doc["requests"]:
        if r["id"].startswith("s-"):
            assert TIMESTAMP.match(r["submitted_at"]) and TIMESTAMP.match(r["completed_at"]), r
            r["submitted_at"] = r["completed_at"] = "T"
    return doc


def test_every_provider_ends_where_the_embedded_platform_does(make: Make, seed: Path, tmp_path: Path) -> None:
    reference_url = f"sqlite:///{tmp_path / 'reference.db'}"
    init(reference_url, str(seed))
    reference = SqlitePlatform.open(reference_url)
    try:
        expected = outcome(reference)
    finally:
        reference.close()
    assert outcome(make(seed)) == expected
