"""The planner is pure: Snapshots built from model values (no database), state as MoveRecord values."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from reconciler import manifests, planner
from reconciler.diagnostics import Diagnostic
from reconciler.manifests import Move
from reconciler.model import (
    Customer,
    Offering,
    PropertyDef,
    Request,
    Service,
    Subscription,
    User,
    UserService,
    conceal,
)
from reconciler.planner import Plan, Snapshot
from reconciler.state import ManifestRef, MoveRecord, MoveStatus, RequestRecord, State

EX = "hosted-exchange"

CATALOG = {EX: Service(EX, "Hosted Exchange", {
    "mailboxQuotaMB": PropertyDef("mailboxQuotaMB", "integer"),
    "activeSync": PropertyDef("activeSync", "boolean"),
    "journalPassword": PropertyDef("journalPassword", "string", sensitive=True),
})}


def reseller(cid: str, plans: tuple[str, ...], sals: dict[str, dict[str, Any]], max_users: int | None = None,
             location: str = "eu-west") -> Customer:
    return Customer(cid, cid.title(), location, None, {EX: Offering(EX, plans, sals, max_users)}, {})


def customer(cid: str, parent: str, plan: str, sal: str, overrides: dict[str, Any] | None = None) -> Customer:
    return Customer(cid, cid.title(), "eu-west", parent, None, {EX: Subscription(plan, sal, overrides or {})})


def user(uid: str, sal: str, **overrides: Any) -> User:
    return User(uid, {EX: UserService(sal, dict(overrides))})


class World:
    """A tiny platform as values; usage is computed from them as the embedded platform does."""

    def __init__(self, northwind_max: int | None = 3) -> None:
        self.customers: dict[str, Customer] = {
            "contoso": reseller("contoso", ("basic",), {"standard": {"mailboxQuotaMB": 2048, "activeSync": True},
                                                        "premium": {"mailboxQuotaMB": 10240, "activeSync": True}}),
            "northwind": reseller("northwind", ("nw",), {"nw-standard": {"mailboxQuotaMB": 4096, "activeSync": True},
                                                         "premium": {"mailboxQuotaMB": 20480, "activeSync": True}},
                                  northwind_max),
            "woodgrove": reseller("woodgrove", ("basic",), {"standard": {"mailboxQuotaMB": 2048, "activeSync": False}}),
            "acme": customer("acme", "contoso", "basic", "standard"),
            "globex": customer("globex", "contoso", "basic", "standard"),
            "initech": customer("initech", "northwind", "nw", "nw-standard"),
        }
        self.users: dict[str, list[User]] = {
            "acme": [user("a1@acme", "standard"), user("a2@acme", "premium")],
            "globex": [user("g1@globex", "standard")],
            "initech": [user("i1@initech", "nw-standard")],
        }
        self.pending: dict[str, list[str]] = {}
        self.users_calls: list[str] = []

    def _users(self, cid: str) -> Iterator[User]:
        self.users_calls.append(cid)
        yield from self.users.get(cid, [])

    def _usage(self, reseller_id: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.customers.values():
            if c.parent == reseller_id:
                for u in self.users.get(c.id, []):
                    for svc in u.services:
                        out[svc] = out.get(svc, 0) + 1
        return out

    def snapshot(self) -> Snapshot:
        requests = {cid: [Request(rid, "CustomerMove", cid, "InProgress") for rid in ids]
                    for cid, ids in self.pending.items()}
        return Snapshot(catalog=CATALOG, customers=dict(self.customers), users=self._users, usage=self._usage,
                        requests=requests)

    def fp(self, cid: str) -> str:
        """The fingerprint the planner computes for a customer as the world shows it now."""
        return self.snapshot().fingerprint(self.customers[cid])


def manifest_text(name: str, cust: str, to: str, services: str = "") -> str:
    text = (f"apiVersion: reconciler/v1\nkind: CustomerMove\nmetadata:\n  name: {name}\n"
            f"spec:\n  customer: {cust}\n  toReseller: {to}\n  location: eu-west\n")
    if services:
        text += "  services:\n" + "".join(f"    {line}\n" for line in services.strip("\n").splitlines())
    return text


ACME_TO_NW = f"""
{EX}:
  plan: nw
  sals:
    standard: nw-standard
"""
INITECH_TO_WG = f"""
{EX}:
  plan: basic
  sals:
    nw-standard: standard
"""


@pytest.fixture
def load(tmp_path: Path) -> Any:
    """load(text, text, ...) -> [Move]: each text a manifest file, planned in argument order."""
    counter = iter(range(1000))

    def _load(*texts: str) -> list[Move]:
        paths = []
        for text in texts:
            p = tmp_path / f"m{next(counter):03d}.yaml"
            p.write_text(text, encoding="utf-8")
            paths.append(str(p))
        loaded = manifests.load(paths)
        assert loaded.diagnostics == [], [d.format() for d in loaded.diagnostics]
        return loaded.moves

    return _load


def run(moves: list[Move], world: World, records: Mapping[str, MoveRecord] | None = None,
        diagnostics: Iterable[Diagnostic] = ()) -> Plan:
    recs = dict(records or {})
    latest = State(moves=recs).latest_done()
    return planner.plan(moves, world.snapshot(), recs, latest, list(diagnostics))


def codes(diags: Iterable[Diagnostic]) -> set[str]:
    return {d.code for d in diags}


def record(move: Move, status: MoveStatus, *, serial: int | None = 1, sha: str | None = None,
           fingerprint: str | None = None, requests: list[RequestRecord] | None = None) -> MoveRecord:
    return MoveRecord(manifest=ManifestRef(file=move.file, sha256=sha or move.digest), customer=move.spec.customer,
                      from_reseller="contoso", to_reseller=move.spec.to_reseller, status=status,
                      applied_serial=serial, customer_fingerprint=fingerprint, requests=requests or [])


# -- sequential planning against the view ------------------------------------------------------

def test_capacity_counts_the_earlier_valid_moves_of_the_batch(load: Any) -> None:
    # northwind allows 3 and has 1 (initech); acme brings 2 (3: fine), then globex 1 (4: exceeded)
    w = World(northwind_max=3)
    moves = load(manifest_text("acme-to-northwind", "acme", "northwind", ACME_TO_NW),
                 manifest_text("globex-to-northwind", "globex", "northwind", ACME_TO_NW))
    p = run(moves, w)
    assert [(m.action, codes(m.diagnostics)) for m in p.moves] == [("move", set()),
                                                                   ("invalid", {"capacity-exceeded"})]
    assert p.moves[1].diagnostics[0].message == (
        "'northwind' allows 3 users of 'hosted-exchange'; it has 3 and this move brings 1 more (4)")
    # each alone fits
    assert run(moves[1:], w).moves[0].action == "move"


def test_a_move_the_policy_refuses_does_not_take_capacity_from_later_moves(load: Any) -> None:
    """The policy judges each move as it is planned (planner.plan's check): acme's 2 users are over
    max_users_per_move, so acme stays, and globex fits northwind (before, acme was counted and globex refused)."""
    from reconciler import policy

    w = World(northwind_max=3)
    moves = load(manifest_text("acme-to-northwind", "acme", "northwind", ACME_TO_NW),
                 manifest_text("globex-to-northwind", "globex", "northwind", ACME_TO_NW))
    p = planner.plan(moves, w.snapshot(), {}, {}, [], policy.move_check(policy.Policy(max_users_per_move=1)))
    assert [(m.action, codes(m.diagnostics)) for m in p.moves] == [("invalid", {"policy-large-move"}),
                                                                   ("move", set())]
    assert (p.moves[0].users, p.moves[0].order, p.moves[0].request_id) == ([], None, None)


def test_a_move_out_frees_capacity_for_a_later_move_in(load: Any) -> None:
    # northwind allows 2 and has 1 (initech); initech leaves first, so acme's 2 fit
    w = World(northwind_max=2)
    acme = manifest_text("acme-to-northwind", "acme", "northwind", ACME_TO_NW)
    moves = load(manifest_text("initech-to-woodgrove", "initech", "woodgrove", INITECH_TO_WG), acme)
    p = run(moves, w)
    assert [m.action for m in p.moves] == ["move", "move"]
    # the other order: acme does not fit while initech is still there
    p = run(list(reversed(moves)), w)
    assert [(m.name, m.action) for m in p.moves] == [("acme-to-northwind", "invalid"),
                                                     ("initech-to-woodgrove", "move")]
    assert codes(p.moves[0].diagnostics) == {"capacity-exceeded"}


def test_a_later_move_sees_the_earlier_moves_reparenting_and_sal_mapping(load: Any) -> None:
    # initech is at northwind: the second manifest needs nothing before the run (not a duplicate), but it is
    # planned against the view where the first one has moved initech to woodgrove with its users on `standard`
    w = World()
    back = f"""
{EX}:
  plan: nw
  sals:
    standard: nw-standard
"""
    moves = load(manifest_text("initech-to-woodgrove", "initech", "woodgrove", INITECH_TO_WG),
                 manifest_text("initech-to-northwind", "initech", "northwind", back))
    first, second = run(moves, w).moves
    assert (first.action, first.from_reseller) == ("move", "northwind")
    assert (second.action, second.from_reseller, second.diagnostics) == ("move", "woodgrove", [])
    assert second.services[0]["plan"] == {"from": "basic", "to": "nw"}
    assert second.services[0]["sal_mappings"] == [{"from": "standard", "to": "nw-standard", "source": "explicit"}]
    assert [(u["user"], u["services"][0]["sal"]) for u in second.users] == [
        ("i1@initech", {"from": "standard", "to": "nw-standard"})]
    assert second.users[0]["services"][0]["properties"] == {
        "activeSync": {"from": False, "to": True}, "mailboxQuotaMB": {"from": 2048, "to": 4096}}


def test_invalid_moves_do_not_change_the_view(load: Any) -> None:
    # northwind allows 3 and has 1; acme's move (2 users, fits) fails on its plan: globex's check does not
    # count acme's users (1 + 1, not 1 + 2 + 1)
    w = World(northwind_max=3)
    bad = f"""
{EX}:
  plan: nw-gold
  sals:
    standard: nw-standard
"""
    moves = load(manifest_text("acme-to-northwind", "acme", "northwind", bad),
                 manifest_text("globex-to-northwind", "globex", "northwind", ACME_TO_NW))
    p = run(moves, w)
    assert [(m.action, codes(m.diagnostics)) for m in p.moves] == [("invalid", {"plan-unknown"}), ("move", set())]


# -- duplicate-move ------------------------------------------------------------------------------

def test_duplicates_are_all_invalid_and_do_not_change_the_view(load: Any) -> None:
    # northwind allows 3 and has 1: if either acme move counted, globex (1) would make it 4
    w = World(northwind_max=3)
    moves = load(manifest_text("acme-to-northwind", "acme", "northwind", ACME_TO_NW),
                 manifest_text("acme-to-woodgrove", "acme", "woodgrove"),
                 manifest_text("globex-to-northwind", "globex", "northwind", ACME_TO_NW),
                 manifest_text("acme-to-northwind-again", "acme", "northwind", ACME_TO_NW))
    p = run(moves, w)
    assert [(m.name, m.action, codes(m.diagnostics)) for m in p.moves] == [
        ("acme-to-northwind", "invalid", {"duplicate-move"}),
        ("acme-to-woodgrove", "invalid", {"duplicate-move"}),
        ("globex-to-northwind", "move", set()),
        ("acme-to-northwind-again", "invalid", {"duplicate-move"}),
    ]
    d = p.moves[0].diagnostics[0]
    assert d.message == (f"'acme' is also moved by acme-to-woodgrove ({moves[1].file}), "
                         f"acme-to-northwind-again ({moves[3].file}); keep one move per customer")
    assert (d.path, d.file, d.line, d.column) == ("$.spec.customer", moves[0].file, 6, 13)
    assert all(m.request_id is None and m.requests == [] for m in p.moves if m.action == "invalid")


def test_duplicate_is_judged_against_the_platform_before_the_run(load: Any) -> None:
    # initech is already at northwind: that manifest needs nothing before the run, so it is no duplicate
    w = World()
    moves = load(manifest_text("initech-to-northwind", "initech", "northwind"),
                 manifest_text("initech-to-woodgrove", "initech", "woodgrove", INITECH_TO_WG))
    p = run(moves, w)
    assert [(m.action, m.reason, codes(m.diagnostics)) for m in p.moves] == [
        ("noop", "already-at-destination", set()), ("move", None, set())]


def test_two_moves_of_a_missing_customer_get_customer_not_found_not_duplicate_move(load: Any) -> None:
    moves = load(manifest_text("ghost-a", "ghost", "northwind"), manifest_text("ghost-b", "ghost", "woodgrove"))
    p = run(moves, World())
    assert [codes(m.diagnostics) for m in p.moves] == [{"customer-not-found"}, {"customer-not-found"}]


def test_a_move_the_state_records_as_applied_is_no_duplicate(load: Any) -> None:
    w = World()
    w.customers["acme"] = customer("acme", "woodgrove", "basic", "standard")
    old, new = load(manifest_text("acme-to-woodgrove", "acme", "woodgrove"),
                    manifest_text("acme-to-northwind", "acme", "northwind", ACME_TO_NW))
    p = run([old, new], w, {old.name: record(old, "applied", fingerprint=w.fp("acme"))})
    assert [(m.action, m.reason, codes(m.diagnostics)) for m in p.moves] == [
        ("noop", "applied", set()), ("move", None, set())]


# -- state-dependent reasons ---------------------------------------------------------------------

@pytest.mark.parametrize("status", ["applied", "adopted"])
def test_applied_or_adopted_and_the_platform_agrees_is_noop_applied(load: Any, status: MoveStatus) -> None:
    w = World()
    w.customers["acme"] = customer("acme", "woodgrove", "basic", "standard")
    (m,) = load(manifest_text("acme-to-woodgrove", "acme", "woodgrove"))
    p = run([m], w, {m.name: record(m, status, fingerprint=w.fp("acme"))})
    pm = p.moves[0]
    assert (pm.action, pm.reason, pm.diagnostics, pm.requests) == ("noop", "applied", [], [])
    assert w.users_calls == []  # the fingerprint matches: no need to read the users again


def test_fingerprint_differs_but_nothing_would_change_is_still_applied(load: Any) -> None:
    w = World()
    w.customers["acme"] = customer("acme", "woodgrove", "basic", "standard")
    w.users["acme"] = [user("a1@acme", "standard"), user("a3@acme", "standard")]  # a2 left, a3 joined
    (m,) = load(manifest_text("acme-to-woodgrove", "acme", "woodgrove"))
    p = run([m], w, {m.name: record(m, "applied", fingerprint="fp-1")})
    assert (p.moves[0].action, p.moves[0].reason, p.moves[0].diagnostics) == ("noop", "applied", [])


def test_drifted_when_replanning_would_change_something(load: Any) -> None:
    w = World()  # acme is back under contoso, though the state says it went to northwind
    (m,) = load(manifest_text("acme-to-northwind", "acme", "northwind", ACME_TO_NW))
    p = run([m], w, {m.name: record(m, "applied", fingerprint="fp-at-apply")})
    pm = p.moves[0]
    assert (pm.action, pm.reason) == ("noop", "drifted")
    assert [(d.code, d.severity, d.message, d.line, d.column, d.path) for d in pm.diagnostics] == [
        ("drift", "warning", "'acme' no longer matches 'acme-to-northwind' on the platform; it is not moved back "
         "silently: write a new move to move it again", 1, 1, "$")]
    assert pm.requests == [] and pm.request_id is None
    assert p.applyable and not p.changes
    assert p.summary()["warnings"] == 1


def test_drifted_when_replanning_would_be_invalid(load: Any) -> None:
    w = World()
    w.customers["acme"] = customer("acme", "northwind", "nw", "nw-standard")
    del w.customers["woodgrove"]  # the destination is gone
    (m,) = load(manifest_text("acme-to-woodgrove", "acme", "woodgrove"))
    p = run([m], w, {m.name: record(m, "applied", fingerprint="fp-1")})
    assert (p.moves[0].action, p.moves[0].reason, codes(p.moves[0].diagnostics)) == ("noop", "drifted", {"drift"})


def test_superseded_by_a_later_applied_move_of_the_same_customer(load: Any) -> None:
    w = World()
    w.customers["acme"] = customer("acme", "woodgrove", "basic", "standard")
    old, new = load(manifest_text("acme-to-northwind", "acme", "northwind", ACME_TO_NW),
                    manifest_text("acme-to-woodgrove", "acme", "woodgrove"))
    recs = {old.name: record(old, "applied", serial=3, fingerprint="fp-1"),
            new.name: record(new, "applied", serial=7, fingerprint=w.fp("acme"))}
    p = run([old, new], w, recs)
    assert [(m.name, m.action, m.reason, m.diagnostics) for m in p.moves] == [
        ("acme-to-northwind", "noop", "superseded", []), ("acme-to-woodgrove", "noop", "applied", [])]
    # the state alone says so: the later manifest need not be in the run
    assert [(m.action, m.reason) for m in run([old], w, recs).moves] == [("noop", "superseded")]


def test_the_higher_applied_serial_wins_not_the_manifest_order(load: Any) -> None:
    w = World()  # acme at northwind: the move applied last (serial 9) is acme-to-northwind, listed first
    w.customers["acme"] = customer("acme", "northwind", "nw", "nw-standard")
    nw, wg = load(manifest_text("acme-to-northwind", "acme", "northwind", ACME_TO_NW),
                  manifest_text("acme-to-woodgrove", "acme", "woodgrove"))
    recs = {nw.name: record(nw, "applied", serial=9, fingerprint=w.fp("acme")),
            wg.name: record(wg, "applied", serial=4, fingerprint="fp-4")}
    p = run([nw, wg], w, recs)
    assert [(m.name, m.reason) for m in p.moves] == [("acme-to-northwind", "applied"),
                                                     ("acme-to-woodgrove", "superseded")]
    assert all(m.action == "noop" and m.diagnostics == [] for m in p.moves)


@pytest.mark.parametrize("status", ["applied", "adopted"])
def test_manifest_changed_after_apply(load: Any, status: MoveStatus) -> None:
    w = World()
    (m,) = load(manifest_text("acme-to-northwind", "acme", "northwind", ACME_TO_NW))
    recorded = "ab" * 32
    p = run([m], w, {m.name: record(m, status, sha=recorded)})
    pm = p.moves[0]
    assert (pm.action, pm.reason) == ("invalid", None)
    assert [(d.code, d.severity, d.message, d.line, d.column, d.path) for d in pm.diagnostics] == [
        ("manifest-changed-after-apply", "error",
         f"'acme-to-northwind' was {status} from a different manifest (sha256 abababababab…); an applied move is "
         "history: restore the manifest, or write a new move with a new name", 1, 1, "$")]
    assert not p.applyable and pm.request_id is None


def test_a_failed_record_with_another_digest_plans_a_normal_move(load: Any) -> None:
    w = World()
    (m,) = load(manifest_text("acme-to-northwind", "acme", "northwind", ACME_TO_NW))
    failed = [RequestRecord(id="rq-old-1", status="Failed", error="held"),
              RequestRecord(id="rq-old-2", status="Failed", error="held")]
    p = run([m], w, {m.name: record(m, "failed", sha="cd" * 32, serial=2, requests=failed)})
    pm = p.moves[0]
    assert (pm.action, pm.reason, pm.diagnostics) == ("move", None, [])
    assert pm.start is not None
    assert pm.request_id == planner.request_id(m.name, m.digest, 3, pm.start)
    assert pm.request_id not in {"rq-old-1", "rq-old-2"}


# -- request ids -----------------------------------------------------------------------------------

def test_request_id_is_deterministic() -> None:
    a = planner.request_id("acme-to-northwind", "ab" * 32, 1, "s1")
    assert a == planner.request_id("acme-to-northwind", "ab" * 32, 1, "s1")
    assert re.fullmatch(r"rq-[0-9a-f]{24}", a)
    others = {planner.request_id("acme-to-northwind", "ab" * 32, 2, "s1"),
              planner.request_id("acme-to-northwind", "cd" * 32, 1, "s1"),
              planner.request_id("acme-to-woodgrove", "ab" * 32, 1, "s1"),
              planner.request_id("acme-to-northwind", "ab" * 32, 1, "s2")}
    assert a not in others and len(others) == 4


def test_a_customer_moved_away_and_back_gets_a_new_request_id(load: Any) -> None:
    # The same manifest, attempt 1 both times (a lost state), but the platform ran a request for acme
    # in between: the starting point differs, so the old request can never be taken for this one.
    w = World()
    (m,) = load(manifest_text("acme-to-northwind", "acme", "northwind", ACME_TO_NW))
    first = run([m], w).moves[0]
    snap = w.snapshot()
    snap.requests["acme"] = [Request("rq-moved-it-back", "CustomerMove", "acme", "Provisioned")]
    second = planner.plan([m], snap, {}, {}, []).moves[0]
    assert (first.action, second.action) == ("move", "move")
    assert first.request_id != second.request_id
    assert first.start != second.start


def test_first_attempt_and_attempt_after_failures(load: Any) -> None:
    w = World()
    (m,) = load(manifest_text("acme-to-northwind", "acme", "northwind", ACME_TO_NW))
    first = run([m], w).moves[0]
    assert first.start is not None
    assert first.request_id == planner.request_id(m.name, m.digest, 1, first.start)
    assert first.requests == [{"id": planner.request_id(m.name, m.digest, 1, first.start),
                               "type": "CustomerMove", "customer": "acme", "sub_requests": 4}]
    failed = [RequestRecord(id=planner.request_id(m.name, m.digest, 1, first.start), status="Failed")]
    pm = run([m], w, {m.name: record(m, "failed", requests=failed)}).moves[0]
    assert (pm.action, pm.request_id) == ("move", planner.request_id(m.name, m.digest, 2, first.start))


def test_resume_of_an_in_progress_record_keeps_its_request_id(load: Any) -> None:
    w = World()
    (m,) = load(manifest_text("acme-to-northwind", "acme", "northwind", ACME_TO_NW))
    rid = planner.request_id(m.name, m.digest, 2, "any")
    reqs = [RequestRecord(id=planner.request_id(m.name, m.digest, 1, "any"), status="Failed"),
            RequestRecord(id=rid, status="InProgress")]
    w.pending = {"acme": [rid]}  # the platform still runs it: that is not "in flight" for its own move
    pm = run([m], w, {m.name: record(m, "in-progress", serial=None, requests=reqs)}).moves[0]
    assert (pm.action, pm.request_id, pm.diagnostics) == ("move", rid, [])


def test_another_pending_request_blocks_the_move(load: Any) -> None:
    w = World()
    (m,) = load(manifest_text("acme-to-northwind", "acme", "northwind", ACME_TO_NW))
    rid = planner.request_id(m.name, m.digest, 1, "any")
    w.pending = {"acme": [rid, "rq-other"]}
    pm = run([m], w, {m.name: record(m, "in-progress", serial=None,
                                     requests=[RequestRecord(id=rid, status="Requested")])}).moves[0]
    assert (pm.action, codes(pm.diagnostics)) == ("invalid", {"provisioning-in-flight"})
    assert pm.diagnostics[0].message == ("'acme' has provisioning requests still running (rq-other); "
                                         "wait for them to finish, then plan again")


def test_an_in_progress_record_of_another_digest_is_not_resumed(load: Any) -> None:
    w = World()
    (m,) = load(manifest_text("acme-to-northwind", "acme", "northwind", ACME_TO_NW))
    old = RequestRecord(id="rq-of-the-old-manifest", status="InProgress")
    w.pending = {"acme": [old.id]}
    pm = run([m], w, {m.name: record(m, "in-progress", sha="ef" * 32, serial=None, requests=[old])}).moves[0]
    assert (pm.action, codes(pm.diagnostics)) == ("invalid", {"provisioning-in-flight"})


# -- noop and sal-unused ---------------------------------------------------------------------------

def test_sal_unused_is_not_reported_on_a_noop(load: Any) -> None:
    w = World()
    (m,) = load(manifest_text("initech-to-northwind", "initech", "northwind", ACME_TO_NW))  # maps `standard`
    pm = run([m], w).moves[0]
    assert (pm.action, pm.reason, pm.diagnostics, pm.requests) == ("noop", "already-at-destination", [], [])
    # ...but it is on a move
    (m2,) = load(manifest_text("globex-to-woodgrove", "globex", "woodgrove", f"{EX}:\n  sals:\n    premium: standard"))
    pm2 = run([m2], w).moves[0]
    assert (pm2.action, [(d.code, d.severity) for d in pm2.diagnostics]) == ("move", [("sal-unused", "warning")])


def test_half_done_move_plans_only_what_is_left(load: Any) -> None:
    w = World()
    w.customers["acme"] = customer("acme", "northwind", "nw", "nw-standard")
    w.users["acme"] = [user("a1@acme", "nw-standard"), user("a2@acme", "standard")]
    (m,) = load(manifest_text("acme-to-northwind", "acme", "northwind", ACME_TO_NW))
    pm = run([m], w).moves[0]
    assert (pm.action, pm.from_reseller) == ("move", "northwind")
    assert [u["user"] for u in pm.users] == ["a2@acme"]
    assert pm.services[0]["customer_properties"] == {}
    assert pm.order is not None and pm.order.sal_map == {EX: {"nw-standard": "nw-standard", "standard": "nw-standard"}}
    # and once every user is done, nothing is left
    w.users["acme"] = [user("a1@acme", "nw-standard"), user("a2@acme", "nw-standard")]
    assert run([m], w).moves[0].reason == "already-at-destination"


def test_sensitive_values_never_appear_in_the_plan(load: Any) -> None:
    w = World()
    w.customers["acme"] = customer("acme", "contoso", "basic", "standard", {"journalPassword": "old-Secret-1"})
    w.users["acme"] = [User("a1@acme", {EX: UserService("standard", {})})]
    (m,) = load(manifest_text("acme-to-woodgrove", "acme", "woodgrove",
                              f"{EX}:\n  properties:\n    journalPassword: new-Secret-2"))
    pm = run([m], w).moves[0]
    assert pm.services[0]["customer_properties"] == {"journalPassword": {"from": "(sensitive)", "to": "(sensitive)"}}
    assert pm.users[0]["services"][0]["properties"]["journalPassword"] == {"from": "(sensitive)", "to": "(sensitive)"}
    text = repr(pm.to_json())
    assert "old-Secret-1" not in text and "new-Secret-2" not in text


def test_a_concealed_platform_value_equal_to_the_manifests_is_no_change(load: Any) -> None:
    """A read-only token sees a sensitive value as its digest: the same value in the manifest is no change,
    another one is (issue 14 compares raw values first and conceals only a difference)."""
    w = World()
    w.customers["acme"] = customer("acme", "contoso", "basic", "standard",
                                   {"journalPassword": conceal("same-Secret-1")})
    w.users["acme"] = [User("a1@acme", {EX: UserService("standard", {"journalPassword": conceal("user-Secret")})})]
    same, other = load(manifest_text("acme-same", "acme", "woodgrove",
                                     f"{EX}:\n  properties:\n    journalPassword: same-Secret-1"),
                       manifest_text("acme-other", "acme", "woodgrove",
                                     f"{EX}:\n  properties:\n    journalPassword: other-Secret-2"))
    pm = run([same], w).moves[0]
    assert pm.services[0]["customer_properties"] == {}
    assert pm.users[0]["services"][0]["properties"] == {"activeSync": {"from": True, "to": False}}
    pm = run([other], w).moves[0]
    assert pm.services[0]["customer_properties"] == {"journalPassword": {"from": "(sensitive)", "to": "(sensitive)"}}


@pytest.mark.parametrize(("before", "after", "changed"), [
    (0.0, -0.0, True),  # equal numbers, different JSON: their concealed forms differ
    (1, 1.0, True), (1, True, True), (2.5, 2.5, False), ("pw", "pw", False), ("pw", conceal("pw"), False),
])
def test_a_sensitive_value_is_a_change_exactly_when_its_concealed_form_is(before: Any, after: Any,
                                                                         changed: bool) -> None:
    got = planner._changed({"pw": before, "n": 1}, {"pw": after, "n": 1}, {"pw"})
    assert got == ({"pw": {"from": "(sensitive)", "to": "(sensitive)"}} if changed else {})
    assert bool(got) is (conceal(before) != conceal(after))
    assert planner._changed({"n": 0.0}, {"n": -0.0}, {"pw"}) == {}  # not sensitive: compared as numbers


def test_users_sharing_a_user_service_and_users_with_equal_overrides_each_get_their_change(load: Any) -> None:
    """The diff computes a change once per (service, SAL) for users without overrides, once per UserService
    object for the others (a platform read shares them): every user still gets exactly its own change."""
    w = World(northwind_max=None)
    shared = UserService("standard", {"mailboxQuotaMB": 512})
    w.users["acme"] = [
        User("a1@acme", {EX: shared}), User("a2@acme", {EX: shared}),
        User("a3@acme", {EX: UserService("standard", {"mailboxQuotaMB": 512})}),  # equal, not the same object
        User("a4@acme", {EX: UserService("standard", {"mailboxQuotaMB": 1024})}),
        User("a5@acme", {EX: UserService("standard", {})}), User("a6@acme", {EX: UserService("premium", {})}),
        User("a7@acme", {EX: UserService("standard", {"mailboxQuotaMB": 2048})}),  # what the SAL gives anyway
        User("a8@acme", {}),
    ]
    (m,) = load(manifest_text("acme-to-northwind", "acme", "northwind", ACME_TO_NW))
    pm = run([m], w).moves[0]
    got = {u["user"]: [(e["sal"]["to"], e["properties"]) for e in u["services"]] for u in pm.users}
    assert got == {
        "a1@acme": [("nw-standard", {})], "a2@acme": [("nw-standard", {})], "a3@acme": [("nw-standard", {})],
        "a4@acme": [("nw-standard", {})],
        "a5@acme": [("nw-standard", {"mailboxQuotaMB": {"from": 2048, "to": 4096}})],
        "a6@acme": [("premium", {"mailboxQuotaMB": {"from": 10240, "to": 20480}})],
        "a7@acme": [("nw-standard", {})],
    }
    assert pm.to_json()["users"] == json.loads(json.dumps(pm.to_json()["users"]))


# -- JSON shape ------------------------------------------------------------------------------------

def test_planned_move_to_json_shape(load: Any) -> None:
    w = World()
    (m,) = load(manifest_text("acme-to-northwind", "acme", "northwind",
                              ACME_TO_NW + "  properties:\n    mailboxQuotaMB: 8192\n"))
    pm = run([m], w).moves[0]
    assert pm.to_json() == {
        "name": "acme-to-northwind", "file": m.file, "line": 1, "manifest_sha256": m.digest,
        "customer": "acme", "from_reseller": "contoso", "to_reseller": "northwind", "location": "eu-west",
        "allow_large": False, "action": "move", "reason": None, "diagnostics": [],
        "services": [{"service": EX, "plan": {"from": "basic", "to": "nw"},
                      "sal_mappings": [{"from": "standard", "to": "nw-standard", "source": "explicit"},
                                       {"from": "premium", "to": "premium", "source": "name"}],
                      "customer_properties": {"mailboxQuotaMB": {"from": None, "to": 8192}}}],
        "users": [
            {"user": "a1@acme", "services": [{"service": EX, "sal": {"from": "standard", "to": "nw-standard"},
                                              "properties": {"mailboxQuotaMB": {"from": 2048, "to": 8192}}}]},
            {"user": "a2@acme", "services": [{"service": EX, "sal": {"from": "premium", "to": "premium"},
                                              "properties": {"mailboxQuotaMB": {"from": 10240, "to": 8192}}}]},
        ],
        # one request: the customer, its one subscription and its two users
        "requests": [{"id": planner.request_id(m.name, m.digest, 1, pm.start or ""), "type": "CustomerMove",
                      "customer": "acme", "sub_requests": 4}],
    }


def test_invalid_move_to_json_carries_its_diagnostics(load: Any) -> None:
    (m,) = load(manifest_text("ghost-to-northwind", "ghost", "northwind"))
    d = run([m], World()).moves[0].to_json()
    assert (d["action"], d["from_reseller"], d["services"], d["users"], d["requests"]) == (
        "invalid", None, [], [], [])
    assert d["diagnostics"] == [{"severity": "error", "code": "customer-not-found",
                                 "message": "customer 'ghost' does not exist on the platform",
                                 "file": m.file, "line": 6, "column": 13, "path": "$.spec.customer"}]


def test_plan_summary_counts(load: Any) -> None:
    w = World(northwind_max=None)
    moves = load(manifest_text("acme-to-northwind", "acme", "northwind", ACME_TO_NW),
                 manifest_text("globex-to-woodgrove", "globex", "woodgrove", f"{EX}:\n  sals:\n    premium: standard"),
                 manifest_text("initech-to-northwind", "initech", "northwind"),
                 manifest_text("ghost-to-northwind", "ghost", "nowhere"))
    top = [Diagnostic(code="schema", message="$.spec: 'location' is required", file="x.yaml", line=6, column=3),
           Diagnostic(code="empty", message="empty document; nothing to plan", severity="warning", file="y.yaml")]
    p = run(moves, w, diagnostics=top)
    assert [m.action for m in p.moves] == ["move", "move", "noop", "invalid"]
    # globex: its user's SAL keeps its id but activeSync changes (True -> False at woodgrove)
    assert p.summary() == {"moves": 2, "noop": 1, "invalid": 1, "users_changed": 3, "requests": 2,
                           "errors": 3, "warnings": 2}
    assert list(p.summary()) == ["moves", "noop", "invalid", "users_changed", "requests", "errors", "warnings"]
    assert not p.applyable and p.changes
    assert p.diagnostics == top


def test_an_empty_plan() -> None:
    p = planner.plan([], World().snapshot(), {}, {}, [])
    assert p.summary() == {"moves": 0, "noop": 0, "invalid": 0, "users_changed": 0, "requests": 0,
                           "errors": 0, "warnings": 0}
    assert p.applyable and not p.changes


# -- suspected bugs --------------------------------------------------------------------------------

def test_an_applied_move_is_not_drifted_by_a_new_move_earlier_in_the_batch(load: Any) -> None:
    w = World()  # initech is at northwind, as the applied initech-to-northwind left it
    new, old = load(manifest_text("initech-to-woodgrove", "initech", "woodgrove", INITECH_TO_WG),
                    manifest_text("initech-to-northwind", "initech", "northwind"))
    recs = {old.name: record(old, "applied", fingerprint=w.fp("initech"))}
    p = run([new, old], w, recs)
    assert [(m.name, m.action, m.reason, codes(m.diagnostics)) for m in p.moves] == [
        ("initech-to-woodgrove", "move", None, set()), ("initech-to-northwind", "noop", "applied", set())]
    # the other order plans the same, and so does the contract's "the platform no longer matches"
    p = run([old, new], w, recs)
    assert [(m.name, m.action, m.reason, codes(m.diagnostics)) for m in p.moves] == [
        ("initech-to-northwind", "noop", "applied", set()), ("initech-to-woodgrove", "move", None, set())]
