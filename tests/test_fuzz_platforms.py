"""Fuzzing on generated YAML and generated platforms (issue 6 part 4), beside tests/test_fuzz.py (which fuzzes
manifests against the one fixture platform):

- the safe loader reads every YAML text PyYAML's emitter writes, in any style, exactly as PyYAML's own safe
  loader does, with both parsers (differential testing), and gives a position for every node;
- generated seeds, perturbed, either make a platform or are refused with PlatformError;
- on generated platforms, planning generated moves (written in random YAML styles) raises nothing but the
  project's own errors, and a plan without errors always applies: every move is provisioned, each user ends up
  with exactly the SAL and effective properties the plan promised, the others are untouched, and planning the
  same manifests again finds nothing left to do.

A fixed budget by default (the `default` hypothesis profile: the whole module stays near 20 s); a long run by
hand with `HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/test_fuzz_platforms.py`.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import effective_view
from hypothesis import event, given, settings
from hypothesis import strategies as st

from reconciler import app, yamlsafe
from reconciler.config import Settings
from reconciler.diagnostics import Diagnostic
from reconciler.errors import PlatformError, ReconcilerError
from reconciler.model import SENSITIVE
from reconciler.platforms import sqlite as engine
from reconciler.yamlsafe import Doc

PARSERS = {"pure-python": yaml.SafeLoader, **({"libyaml": yaml.CSafeLoader} if hasattr(yaml, "CSafeLoader") else {})}


def examples(share: float) -> int:
    """This test's part of the loaded profile's budget."""
    return max(5, int(settings().max_examples * share))


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


# -- generated YAML: the safe loader agrees with PyYAML's -----------------------------------------------------------
finite = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | st.integers() | finite | st.text(max_size=12)
data = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                          max_size=4), max_leaves=25)
styles = st.fixed_dictionaries({
    "default_flow_style": st.sampled_from([False, True, None]),
    "default_style": st.sampled_from([None, '"', "'"]),
    "indent": st.integers(2, 8),
    "width": st.integers(20, 200),
    "allow_unicode": st.booleans(),
    "explicit_start": st.booleans(),
    "explicit_end": st.booleans(),
    "sort_keys": st.booleans(),
    "line_break": st.sampled_from(["\n", "\r\n"]),
})


def emit(docs: list[Any], style: dict[str, Any]) -> str:
    return yaml.dump_all(docs, Dumper=_NoAliases, **style)


def explicit_tag(ev: Any) -> bool:
    if isinstance(ev, yaml.ScalarEvent):
        return ev.tag is not None and not ev.implicit[0] and not ev.implicit[1]
    return isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)) and ev.tag is not None and not ev.implicit


def paths_of(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths_of(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths_of(v, (*path, i))
    return out


def same(a: Any, b: Any) -> bool:
    """Equal, with NaN-free floats compared exactly and types kept apart (True is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@settings(max_examples=examples(2.0), deadline=None)
@given(docs=st.lists(data, min_size=1, max_size=3), style=styles, parser=st.sampled_from(sorted(PARSERS)),
       bom=st.booleans())
def test_the_safe_loader_reads_what_pyyaml_writes_as_pyyaml_does(docs: list[Any], style: dict[str, Any],
                                                                 parser: str, bom: bool) -> None:
    text = emit(docs, style)
    raw = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")
    decoded, problem = yamlsafe.decode(raw, "f.yaml")
    assert problem is None and decoded == text
    expected = list(yaml.load_all(text, Loader=PARSERS[parser]))
    old = yamlsafe._EventSource
    yamlsafe._EventSource = PARSERS[parser]
    try:
        got = list(yamlsafe.load_all(decoded, "f.yaml"))
    finally:
        yamlsafe._EventSource = old
    diags = [g.format() for g in got if isinstance(g, Diagnostic)]
    if any(explicit_tag(ev) for ev in yaml.parse(text, Loader=PARSERS[parser])):
        # A quoting style that does not read back as the value's type makes the emitter write a tag (`!!int "1"`).
        assert len(diags) == 1 and "tags ('tag:yaml.org,2002:" in diags[0], (diags, text)
        return
    if any(isinstance(ev, yaml.ScalarEvent) and ev.implicit[0] and yamlsafe.ambiguous(ev.value)
           for ev in yaml.parse(text, Loader=PARSERS[parser])):
        # PyYAML writes `y`, `N` or `0o17` plain; YAML 1.1 and 1.2 tools read them otherwise: refused, said so
        # (`platform export` quotes them, so that every export seeds again).
        assert len(diags) >= 1 and all("YAML 1." in d for d in diags), (diags, text)
        return
    assert diags == [], (diags, text)
    loaded = [g for g in got if isinstance(g, Doc)]
    assert same([d.data for d in loaded], expected), (text, [d.data for d in loaded], expected)
    for d in loaded:
        missing = [p for p in paths_of(d.data) if p not in d.marks]
        assert missing == [], (missing, text)
        lines = len(re.split("\r\n|[\n\r\x85\u2028\u2029]", text))  # YAML's line breaks
        assert all(1 <= line <= lines and col >= 1 for line, col in d.marks.values()), text


@settings(max_examples=examples(0.5), deadline=None)
@given(value=st.sampled_from([math.inf, -math.inf, math.nan]), style=styles, parser=st.sampled_from(sorted(PARSERS)))
def test_non_finite_numbers_are_refused_in_any_style(value: float, style: dict[str, Any], parser: str) -> None:
    style = {**style, "default_style": None}
    text = emit([{"spec": {"q": value}}], style)
    old = yamlsafe._EventSource
    yamlsafe._EventSource = PARSERS[parser]
    try:
        got = list(yamlsafe.load_all(text, "f.yaml"))
    finally:
        yamlsafe._EventSource = old
    assert isinstance(got[-1], Diagnostic) and got[-1].code == "yaml", (got, text)
    assert got[-1].message.endswith(" is not a finite number"), got[-1]


# -- generated platforms ---------------------------------------------------------------------------------------------
LOCATIONS = ["eu", "us"]
CATALOG: dict[str, dict[str, dict[str, Any]]] = {
    "mail": {"q": {"type": "integer"}, "on": {"type": "boolean"}, "sig": {"type": "string"},
             "pw": {"type": "string", "sensitive": True}},
    "web": {"gb": {"type": "number"}, "ssl": {"type": "boolean"}},
    "crm": {},
}
PLANS = ["p1", "p2", "p3"]
SALS = ["s1", "s2", "s3"]


def value_of(kind: str) -> st.SearchStrategy[Any]:
    return {"integer": st.integers(-3, 3) | st.just(2**62), "boolean": st.booleans(),
            "string": st.text("abxy", max_size=3), "number": st.integers(-3, 3) | st.floats(-5, 5, width=16)}[kind]


def props_of(service: str, allow_null: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    defs = CATALOG[service]
    if not defs:
        return st.just({})

    def values(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries({k: value_of(defs[k]["type"]) | (st.none() if allow_null else st.nothing())
                                      for k in keys})

    return st.lists(st.sampled_from(sorted(defs)), unique=True, max_size=len(defs)).flatmap(values)


@st.composite
def platforms(draw: st.DrawFn, holds: bool = False) -> dict[str, Any]:
    """A seed every reference of which resolves: resellers nested up to three deep, customers whose plans and
    SALs may come from another reseller than their parent (a platform that drifted), pending requests."""
    locations = draw(st.lists(st.sampled_from(LOCATIONS), min_size=1, max_size=2, unique=True))
    services = draw(st.lists(st.sampled_from(sorted(CATALOG)), min_size=1, max_size=3, unique=True))
    customers: list[dict[str, Any]] = []
    offers: dict[str, dict[str, Any]] = {}
    for i in range(draw(st.integers(2, 4))):
        rid = f"r{i}"
        parent = draw(st.sampled_from([None] + [c["id"] for c in customers]))
        offered = {}
        for svc in draw(st.lists(st.sampled_from(services), min_size=1, max_size=len(services), unique=True)):
            sals = draw(st.lists(st.sampled_from(SALS), min_size=1, max_size=3, unique=True))
            offered[svc] = {"plans": draw(st.lists(st.sampled_from(PLANS), min_size=1, max_size=2, unique=True)),
                            "sals": {s: draw(props_of(svc)) for s in sals}}
            if draw(st.integers(0, 5)) == 0:
                offered[svc]["maxUsers"] = draw(st.integers(0, 8))
        offers[rid] = offered
        customers.append({"id": rid, "name": f"Reseller {i}", "location": draw(st.sampled_from(locations)),
                          "parent": parent, "reseller": {"services": offered}})
    resellers = [c["id"] for c in customers]
    any_plans = {s: sorted({p for o in offers.values() if s in o for p in o[s]["plans"]}) for s in services}
    any_sals = {s: sorted({x for o in offers.values() if s in o for x in o[s]["sals"]}) for s in services}
    for j in range(draw(st.integers(1, 4))):
        cid = f"c{j}"
        parent = draw(st.sampled_from(resellers))
        par = next(c for c in customers if c["id"] == parent)
        location = draw(st.sampled_from([par["location"]] * 3 + locations))
        subs = {}
        for svc in draw(st.lists(st.sampled_from(sorted(offers[parent])), max_size=len(offers[parent]), unique=True)):
            own = offers[parent][svc]
            subs[svc] = {"plan": draw(st.sampled_from(own["plans"] * 3 + any_plans[svc])),
                         "sal": draw(st.sampled_from(sorted(own["sals"]) * 3 + any_sals[svc])),
                         "overrides": draw(props_of(svc))}
        users = []
        for k in range(draw(st.integers(0, 3))):
            usvc = {}
            for svc in draw(st.lists(st.sampled_from(sorted(subs)), max_size=len(subs), unique=True)) if subs else []:
                usvc[svc] = {"sal": draw(st.sampled_from(sorted(offers[parent][svc]["sals"]) * 3 + any_sals[svc])),
                             "overrides": draw(props_of(svc))}
            users.append({"id": f"u{k}@{cid}.example", "services": usvc,
                          "hold": draw(st.sampled_from([None, None, "on hold"])) if holds else None})
        customers.append({"id": cid, "name": f"Customer {j}", "location": location, "parent": parent,
                          "services": subs, "users": users})
    requests = []
    if draw(st.integers(0, 6)) == 0:
        requests.append({"id": "rq-pending", "type": "CustomerMove", "status": "InProgress",
                         "customer": draw(st.sampled_from([c["id"] for c in customers]))})
    return {"apiVersion": "reconciler/v1", "kind": "Platform", "locations": [{"id": x} for x in locations],
            "services": [{"id": s, "properties": copy.deepcopy(CATALOG[s])} for s in services], "customers": customers,
            "requests": requests}


@st.composite
def moves_for(draw: st.DrawFn, seed: dict[str, Any], tidy: bool = False) -> list[dict[str, Any]]:
    """Moves of the platform's customers, some wrong in one of the ways the rules know. `tidy`: moves written
    the way an operator who read `new-move` would, to a reseller that offers every service, every SAL in use
    mapped, property values of the right type: most of those plans apply."""
    by_id = {c["id"]: c for c in seed["customers"]}
    resellers = [c["id"] for c in seed["customers"] if c.get("reseller")]
    plain = [c["id"] for c in seed["customers"] if not c.get("reseller")]
    docs = []
    for i in range(draw(st.integers(1, 4))):
        if tidy:
            left = [c for c in plain if c not in {d["spec"]["customer"] for d in docs}] or plain
            cid = draw(st.sampled_from(left))
            subscribed = set(by_id[cid].get("services") or {})
            able = [r for r in resellers if subscribed <= set(by_id[r]["reseller"]["services"])]
            away = [r for r in able if r != by_id[cid]["parent"]]
            to = draw(st.sampled_from(away or able or resellers))
        else:
            cid = draw(st.sampled_from(plain * 4 + resellers + ["ghost"]))
            to = draw(st.sampled_from(resellers * 4 + plain + ["nowhere"]))
        cust = by_id.get(cid)
        location = cust["location"] if cust and (tidy or draw(st.integers(0, 5))) else draw(st.sampled_from(LOCATIONS))
        dest_offers = (by_id[to].get("reseller") or {}).get("services", {}) if to in by_id else {}
        subscribed_services = sorted((cust or {}).get("services") or {})
        chosen = subscribed_services if tidy else draw(st.lists(st.sampled_from(subscribed_services + ["crm"]),
                                                                unique=True, max_size=2))
        services: dict[str, Any] = {}
        for svc in chosen:
            spec: dict[str, Any] = {}
            off = dest_offers.get(svc, {})
            if tidy or draw(st.booleans()):
                spec["plan"] = draw(st.sampled_from(off.get("plans", []) + ([] if tidy and off else ["p9"])))
            used = {cust["services"][svc]["sal"]} if cust and svc in cust.get("services", {}) else set()
            used |= {u["services"][svc]["sal"] for u in (cust or {}).get("users", []) if svc in u["services"]}
            targets = sorted(off.get("sals", {})) + ([] if tidy and off else ["s9"])
            sources = sorted(used) if tidy else draw(st.lists(st.sampled_from(sorted(used) + ["s3"]), unique=True,
                                                              max_size=3))
            spec["sals"] = {x: draw(st.sampled_from(targets)) for x in sources}
            if svc in CATALOG and draw(st.booleans()):
                spec["properties"] = draw(props_of(svc, allow_null=True))
                if not tidy and draw(st.integers(0, 5)) == 0:  # a wrong type, or a property the catalog lacks
                    spec["properties"][draw(st.sampled_from([*CATALOG[svc], "nope"]))] = draw(
                        st.sampled_from(["text", 7, 1.5, True, 2**70]))
            services[svc] = spec
        doc = {"apiVersion": "reconciler/v1", "kind": "CustomerMove",
               "metadata": {"name": f"m{i}-{cid}-to-{to}".replace("@", "-").replace(".", "-")},
               "spec": {"customer": cid, "toReseller": to, "location": location}}
        if services or draw(st.booleans()):
            doc["spec"]["services"] = services
        docs.append(doc)
    return docs


_runs = itertools.count()


def workspace(tmp_path: Path, seed: dict[str, Any], docs: list[dict[str, Any]], style: dict[str, Any],
              per_file: bool) -> tuple[Settings, list[str]]:
    root = tmp_path / f"run-{next(_runs)}"
    (root / "moves").mkdir(parents=True)
    (root / "seed.json").write_text(json.dumps(seed), encoding="utf-8")
    url = f"sqlite:///{root / 'platform.db'}"
    engine.init(url, str(root / "seed.json"))
    style = {**style, "default_style": None}  # a quoted 2**62 would be a string, as YAML says
    if per_file:
        for i, d in enumerate(docs):
            (root / "moves" / f"{i:02d}.yaml").write_text(emit([d], style), encoding="utf-8")
    else:
        (root / "moves" / "all.yaml").write_text(emit(docs, {**style, "explicit_start": True}), encoding="utf-8")
    cfg = Settings(platform_url=url, state=str(root / "state.json"))
    return cfg, [str(root / "moves")]


def promised(plan_json: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """user -> service -> {"sal": to, property: to} from the plan of the moves that change something."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for m in plan_json["moves"]:
        if m["action"] != "move":
            continue
        for u in m["users"]:
            for s in u["services"]:
                # a customer moved twice in one batch: the later move's changes are on top of the earlier's
                out.setdefault(u["user"], {}).setdefault(s["service"], {}).update(
                    {"sal": s["sal"]["to"], **{k: v["to"] for k, v in s["properties"].items()}})
    return out


@settings(max_examples=examples(2.5), deadline=None)
@given(data=st.data(), style=styles, per_file=st.booleans())
def test_a_plan_without_errors_always_applies_as_promised(tmp_path: Path, data: st.DataObject, style: dict[str, Any],
                                                         per_file: bool) -> None:
    seed = data.draw(platforms(), label="seed")
    docs = data.draw(moves_for(seed, tidy=data.draw(st.integers(0, 3)) > 0), label="moves")
    cfg, paths = workspace(tmp_path, seed, docs, style, per_file)
    try:
        result = app.plan(paths, cfg)
    except ReconcilerError as e:
        pytest.fail(f"plan raised {e!r}")  # these inputs are files and platforms that exist: no reason to
    plan = result.to_json()
    applyable = result.plan.applyable
    assert applyable == (plan["summary"]["errors"] == 0)
    event(f"applyable: {applyable}; moves {plan['summary']['moves']}, noop {plan['summary']['noop']}")
    if not applyable:
        return
    before = effective_view(engine.SqlitePlatform.open(cfg.platform_url).export())
    ar = app.apply(cfg, paths)
    moved = [m for m in plan["moves"] if m["action"] == "move"]
    adopted = [m["name"] for m in plan["moves"] if m["reason"] == "already-at-destination"]
    assert ar.ok, (ar.failed, plan)
    assert ar.applied == [m["name"] for m in moved]
    assert ar.adopted == adopted
    doc = engine.SqlitePlatform.open(cfg.platform_url).export()
    after = effective_view(doc)
    parents = {c["id"]: c["parent"] for c in doc["customers"]}
    final = {m["customer"]: m["to_reseller"] for m in moved}  # the last move of a customer wins
    assert {c: parents[c] for c in final} == final
    promises = promised(plan)
    moved_users = {u["id"] for c in doc["customers"] if c["id"] in {m["customer"] for m in moved}
                   for u in c.get("users") or []}
    for uid, services in after.items():
        for svc, (sal, eff) in services.items():
            want = promises.get(uid, {}).get(svc)
            if want is None:  # the plan promised no change: none happened
                assert (sal, eff) == before[uid][svc], (uid, svc, plan)
                continue
            assert uid in moved_users
            assert sal == want["sal"], (uid, svc, plan)
            for k, v in want.items():
                if k == "sal" or v == SENSITIVE:
                    continue
                assert eff.get(k) == v, (uid, svc, k, eff, plan)
            unchanged = {k for k in eff.keys() | before[uid][svc][1].keys() if k not in want}
            assert {k: eff.get(k) for k in unchanged} == {k: before[uid][svc][1].get(k) for k in unchanged}
    again = app.plan(paths, cfg).to_json()
    assert again["applyable"] and not any(m["action"] == "move" for m in again["moves"]), again
    assert all(m["reason"] in ("applied", "superseded") for m in again["moves"]), again


@settings(max_examples=examples(1.0), deadline=None)
@given(data=st.data(), style=styles)
def test_holds_fail_a_planned_move_cleanly_and_nothing_else_raises(tmp_path: Path, data: st.DataObject,
                                                                   style: dict[str, Any]) -> None:
    seed = data.draw(platforms(holds=True), label="seed")
    docs = data.draw(moves_for(seed), label="moves")
    cfg, paths = workspace(tmp_path, seed, docs, style, per_file=data.draw(st.booleans()))
    result = app.plan(paths, cfg)
    if not result.plan.applyable:
        with pytest.raises(ReconcilerError, match="nothing was applied: the plan has errors"):
            app.apply(cfg, paths)
        return
    ar = app.apply(cfg, paths)
    held = {c["id"] for c in seed["customers"] if any(u.get("hold") for u in c.get("users") or [])}
    for name, error in ar.failed:
        m = next(x for x in result.plan.moves if x.name == name)
        assert m.customer in held and "cannot be provisioned: on hold" in error
    assert ar.ok == (not ar.failed)


# -- generated seeds, perturbed: a platform or a PlatformError, nothing else -----------------------------------------
@st.composite
def perturbed_seeds(draw: st.DrawFn) -> Any:
    seed = copy.deepcopy(draw(platforms(holds=True)))
    nodes: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                nodes.append((node, k))
                walk(v)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                nodes.append((node, i))
                walk(v)

    walk(seed)
    for _ in range(draw(st.integers(1, 3))):
        parent, key = draw(st.sampled_from(nodes))
        op = draw(st.sampled_from(["replace", "delete", "rename"]))
        try:
            if op == "replace":
                parent[key] = draw(scalars | st.lists(scalars, max_size=2) | st.dictionaries(st.text(max_size=3),
                                                                                             scalars, max_size=2))
            elif op == "delete":
                del parent[key]
            elif isinstance(parent, dict):
                parent[draw(st.sampled_from(["r0", "c0", "s1", "p1", "mail", "eu", "x y", "", "é"]))] = parent.pop(key)
        except (KeyError, IndexError):
            pass
    return seed


@settings(max_examples=examples(1.5), deadline=None)
@given(seed=perturbed_seeds(), as_yaml=st.booleans())
def test_a_perturbed_seed_makes_a_platform_or_is_refused(tmp_path: Path, seed: Any, as_yaml: bool) -> None:
    root = tmp_path / f"seed-{next(_runs)}"
    root.mkdir()
    f = root / ("seed.yaml" if as_yaml else "seed.json")
    text = yaml.dump(seed, Dumper=_NoAliases) if as_yaml else json.dumps(seed)
    f.write_text(text, encoding="utf-8")
    url = f"sqlite:///{root / 'p.db'}"
    try:
        counts = engine.init(url, str(f))
    except PlatformError as e:
        assert not (root / "p.db").exists()
        assert str(f) in e.message
        return
    assert counts["customers"] == len(seed.get("customers") or [])
    p = engine.SqlitePlatform.open(url)
    try:
        assert len(p.export()["customers"]) == counts["customers"]
    finally:
        p.close()
