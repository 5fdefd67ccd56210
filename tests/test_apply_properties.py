"""Properties of apply over random small platforms and random valid batches of moves:
apply twice == apply once, and the platform after apply is what the plan said."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hypothesis import event, given, note
from hypothesis import strategies as st

from reconciler import app

if TYPE_CHECKING:
    from conftest import Recon

SENSITIVE = "(sensitive)"
SALS = ["std", "pro", "gold", "lite"]
PLANS = ["p1", "p2", "p3"]
PROPERTY_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "integer": st.integers(-2, 3),
    # 2 and 2.0 both: an integer turned float is a change, for the customer and for every user alike.
    "number": st.sampled_from([0.5, 3, 2, 2.0, -1.25]),
    "boolean": st.booleans(),
    "string": st.sampled_from(["a", "b", "zz"]),
}


def subset(draw: st.DrawFn, items: list[Any], min_size: int = 0) -> list[Any]:
    return draw(st.lists(st.sampled_from(items), min_size=min_size, max_size=len(items), unique=True)) if items \
        else []


def props(draw: st.DrawFn, catalog: dict[str, dict[str, Any]], service: str) -> dict[str, Any]:
    defs = catalog[service]
    return {p: draw(PROPERTY_VALUES[defs[p]["type"]]) for p in subset(draw, sorted(defs))}


@st.composite
def batches(draw: st.DrawFn) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A valid seed and a list of valid moves (at most one per customer, within its location)."""
    locations = ["eu", "us"][: draw(st.integers(1, 2))]
    catalog: dict[str, dict[str, Any]] = {}
    for s in range(draw(st.integers(1, 3))):
        defs: dict[str, Any] = {}
        for p in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from(sorted(PROPERTY_VALUES)))
            defs[f"q{p}"] = {"type": kind, **({"sensitive": True} if kind == "string" and draw(st.booleans())
                                              else {})}
        catalog[f"svc{s}"] = defs
    resellers: list[dict[str, Any]] = []
    for r in range(draw(st.integers(2, 3))):
        offered: dict[str, Any] = {}
        for svc in subset(draw, sorted(catalog), min_size=1):
            offered[svc] = {"plans": subset(draw, PLANS, min_size=1),
                            "sals": {sal: props(draw, catalog, svc) for sal in subset(draw, SALS, min_size=1)}}
        reseller: dict[str, Any] = {"id": f"r{r}", "name": f"Reseller {r}",
                                    "location": draw(st.sampled_from(locations)), "parent": None,
                                    "reseller": {"services": offered}}
        if r == 2 and draw(st.booleans()):  # a reseller nested under r0, itself a customer of r0
            top = resellers[0]
            reseller.update(location=top["location"], parent="r0", services={
                svc: {"plan": draw(st.sampled_from(o["plans"])), "sal": draw(st.sampled_from(sorted(o["sals"]))),
                      "overrides": props(draw, catalog, svc)}
                for svc, o in top["reseller"]["services"].items() if draw(st.booleans())})
        resellers.append(reseller)
    customers: list[dict[str, Any]] = []
    for c in range(draw(st.integers(1, 4))):
        parent = draw(st.sampled_from(resellers))
        offers = parent["reseller"]["services"]
        subs = {svc: {"plan": draw(st.sampled_from(offers[svc]["plans"])),
                      "sal": draw(st.sampled_from(sorted(offers[svc]["sals"]))),
                      "overrides": props(draw, catalog, svc)}
                for svc in subset(draw, sorted(offers), min_size=1)}
        users = [{"id": f"u{u}@c{c}.example",
                  "services": {svc: {"sal": draw(st.sampled_from(sorted(offers[svc]["sals"]))),
                                     "overrides": props(draw, catalog, svc)}
                               for svc in subset(draw, sorted(subs))}}
                 for u in range(draw(st.integers(1, 4)))]
        customers.append({"id": f"c{c}", "name": f"Customer {c}", "location": parent["location"],
                          "parent": parent["id"], "services": subs, "users": users})
    seed = {"apiVersion": "reconciler/v1", "kind": "Platform",
            "locations": [{"id": loc, "name": loc} for loc in locations],
            "services": [{"id": s, "name": s, "properties": d} for s, d in catalog.items()],
            "customers": resellers + customers, "requests": []}

    moves: list[dict[str, Any]] = []
    for c in customers:
        candidates = [r for r in resellers if r["location"] == c["location"]
                      and set(c["services"]) <= set(r["reseller"]["services"])]
        if not candidates or draw(st.integers(0, 4)) == 4:  # hypothesis favours 0: most customers move
            continue
        elsewhere = [r for r in candidates if r["id"] != c["parent"]]
        dest = draw(st.sampled_from(elsewhere if elsewhere and draw(st.integers(0, 3)) != 3 else candidates))
        offers = dest["reseller"]["services"]
        spec: dict[str, Any] = {}
        for svc, sub in c["services"].items():
            s: dict[str, Any] = {}
            if sub["plan"] not in offers[svc]["plans"] or draw(st.booleans()):
                s["plan"] = draw(st.sampled_from(offers[svc]["plans"]))
            in_use = [sub["sal"]] + [u["services"][svc]["sal"] for u in c["users"] if svc in u["services"]]
            mapping = {}
            for sal in dict.fromkeys(in_use):
                if sal not in offers[svc]["sals"] or draw(st.booleans()):
                    mapping[sal] = draw(st.sampled_from(sorted(offers[svc]["sals"])))
            if mapping:
                s["sals"] = mapping
            changes = {p: (None if draw(st.booleans()) else v) for p, v in props(draw, catalog, svc).items()}
            if changes:
                s["properties"] = changes
            if s:
                spec[svc] = s
        moves.append({"apiVersion": "reconciler/v1", "kind": "CustomerMove", "metadata": {"name": f"move-{c['id']}"},
                      "spec": {"customer": c["id"], "toReseller": dest["id"], "location": c["location"],
                               **({"services": spec} if spec else {})}})
    return seed, moves


def changed(a: Any, b: Any) -> bool:
    return a != b or type(a) is not type(b)


def shown(value: Any, sensitive: bool) -> Any:
    return SENSITIVE if sensitive and value is not None else value


def check_platform_matches_plan(plan: dict[str, Any], before: dict[str, Any], after: dict[str, Any],
                                effective: Callable[[dict[str, Any]], Any]) -> None:
    secret = {s["id"]: {n for n, p in (s.get("properties") or {}).items() if p.get("sensitive")}
              for s in before["services"]}
    customers_before = {c["id"]: c for c in before["customers"]}
    customers_after = {c["id"]: c for c in after["customers"]}
    view_before, view_after = effective(before), effective(after)
    planned = {m["customer"]: m for m in plan["moves"]}
    for cid, c_after in customers_after.items():
        c_before = customers_before[cid]
        m = planned.get(cid)
        if m is None or m["action"] != "move":
            assert c_after == c_before, cid  # not moved: untouched
            continue
        assert c_after["parent"] == m["to_reseller"]
        assert c_before["parent"] == m["from_reseller"]
        assert {s["service"] for s in m["services"]} == set(c_after["services"])
        for s in m["services"]:
            svc = s["service"]
            sub_before, sub_after = c_before["services"][svc], c_after["services"][svc]
            assert (s["plan"]["from"], s["plan"]["to"]) == (sub_before["plan"], sub_after["plan"])
            mapping = {x["from"]: x["to"] for x in s["sal_mappings"]}
            assert sub_after["sal"] == mapping[sub_before["sal"]]
            ov_before, ov_after = sub_before["overrides"], sub_after["overrides"]
            changed_keys = {k for k in ov_before.keys() | ov_after.keys() if changed(ov_before.get(k), ov_after.get(k))}
            assert set(s["customer_properties"]) == changed_keys, (svc, s["customer_properties"], ov_before, ov_after)
            for k, ch in s["customer_properties"].items():
                hide = k in secret[svc]
                assert ch == {"from": shown(ov_before.get(k), hide), "to": shown(ov_after.get(k), hide)}
        listed = {u["user"]: {x["service"]: x for x in u["services"]} for u in m["users"]}
        assert [u["user"] for u in m["users"]] == sorted(listed)
        for u in c_after["users"]:
            uid = u["id"]
            for svc, (sal_after, eff_after) in view_after[uid].items():
                sal_before, eff_before = view_before[uid][svc]
                keys = {k for k in eff_before.keys() | eff_after.keys()
                        if changed(eff_before.get(k), eff_after.get(k))}
                entry = listed.get(uid, {}).get(svc)
                if sal_before == sal_after and not keys:
                    assert entry is None, (uid, svc, entry)  # unchanged users are not listed
                    continue
                assert entry is not None, (uid, svc, sal_before, sal_after, keys)
                assert entry["sal"] == {"from": sal_before, "to": sal_after}
                assert set(entry["properties"]) == keys
                for k, ch in entry["properties"].items():
                    hide = k in secret[svc]
                    assert ch == {"from": shown(eff_before.get(k), hide), "to": shown(eff_after.get(k), hide)}
            assert set(listed.get(uid, {})) <= set(view_after[uid])


@given(batch=batches())
def test_apply_twice_equals_apply_once_and_the_platform_is_what_the_plan_said(
        batch: tuple[dict[str, Any], list[dict[str, Any]]], make_recon: Callable[..., Recon],
        effective: Callable[[dict[str, Any]], Any]) -> None:
    seed, moves = batch
    note(json.dumps({"seed": seed, "moves": moves}))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "seed.json").write_text(json.dumps(seed), encoding="utf-8")
        ws = make_recon(root / "ws", root / "seed.json")
        ws.moves.mkdir()
        for i, m in enumerate(moves):
            ws.manifest(m["metadata"]["name"], m["spec"]["customer"], m["spec"]["toReseller"], m["spec"]["location"],
                        m["spec"].get("services"), file=f"{i:02d}.yaml")
        paths = [str(ws.moves)]
        settings = ws.settings()
        before = ws.export()

        plan = app.plan(paths, settings).to_json()
        assert plan["applyable"], plan["diagnostics"] + [d for m in plan["moves"] for d in m["diagnostics"]]
        assert {m["action"] for m in plan["moves"]} <= {"move", "noop"}
        for m in plan["moves"]:
            event(f"action {m['action']}")
            event(f"users listed: {min(len(m['users']), 3)}")
        assert all(d["severity"] == "warning" and d["code"] == "sal-unused"
                   for m in plan["moves"] for d in m["diagnostics"]), plan

        first = app.apply(settings, paths, allow_empty=True)  # a drawn batch may hold no move
        assert first.ok
        moving = [m["name"] for m in plan["moves"] if m["action"] == "move"]
        assert first.applied == moving
        assert first.adopted == [m["name"] for m in plan["moves"] if m["action"] == "noop"]
        once = ws.export()
        state_once = ws.state_bytes() if ws.state.exists() else None
        # moves run in parallel: the platform's submission order is not the plan's
        assert sorted((r["id"], r["status"], r["sub_requests"]) for r in once["requests"]) == sorted(
            (m["requests"][0]["id"], "Provisioned", m["requests"][0]["sub_requests"])
            for m in plan["moves"] if m["action"] == "move")
        check_platform_matches_plan(plan, before, once, effective)
        if moves:
            st = ws.state_json()
            assert {n: r["status"] for n, r in st["moves"].items()} == {
                m["name"]: "applied" if m["action"] == "move" else "adopted" for m in plan["moves"]}

        second = app.apply(settings, paths, allow_empty=True)
        assert second.ok and not second.applied and not second.adopted and not second.state_written
        assert ws.export() == once
        assert (ws.state_bytes() if ws.state.exists() else None) == state_once

        again = app.plan(paths, settings).to_json()
        assert {(m["action"], m["reason"]) for m in again["moves"]} <= {("noop", "applied")}
        assert not any(d["code"] == "drift" for m in again["moves"] for d in m["diagnostics"])


def test_an_integer_turned_float_override_is_reported_consistently(tmp_path: Path,
                                                                   make_recon: Callable[..., Recon]) -> None:
    seed = {"apiVersion": "reconciler/v1", "kind": "Platform", "locations": [{"id": "eu"}],
            "services": [{"id": "svc", "properties": {"q0": {"type": "number"}}}],
            "customers": [
                {"id": "r0", "location": "eu", "parent": None,
                 "reseller": {"services": {"svc": {"plans": ["p1"], "sals": {"std": {"q0": 0.5}}}}}},
                {"id": "r1", "location": "eu", "parent": None,
                 "reseller": {"services": {"svc": {"plans": ["p1"], "sals": {"std": {"q0": 0.5}}}}}},
                {"id": "c0", "location": "eu", "parent": "r0",
                 "services": {"svc": {"plan": "p1", "sal": "std", "overrides": {"q0": 2}}},
                 "users": [{"id": "u1@c0.example", "services": {"svc": {"sal": "std", "overrides": {}}}}]}]}
    (tmp_path / "seed.json").write_text(json.dumps(seed), encoding="utf-8")
    ws = make_recon(tmp_path / "ws", tmp_path / "seed.json")
    ws.manifest("move-c0", "c0", "r1", "eu", {"svc": {"properties": {"q0": 2.0}}})
    move = app.plan([str(ws.moves)], ws.settings()).to_json()["moves"][0]
    assert move["action"] == "move"
    customer_says = "q0" in move["services"][0]["customer_properties"]
    users_say = ["q0" in s["properties"] for u in move["users"] for s in u["services"]] == [True]
    assert customer_says == users_say, move
