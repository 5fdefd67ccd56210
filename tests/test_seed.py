"""seed: reading a platform seed (YAML or JSON) and listing every problem in it at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SEED

from reconciler import seed as seeds
from reconciler.errors import PlatformError
from reconciler.yamlsafe import Doc, load_all

# Every kind of reference problem, once each, with the line and column it is reported at.
BAD_SEED = """\
apiVersion: reconciler/v1
kind: Platform
locations:
  - {id: eu-west}
  - {id: eu-west}
services:
  - id: hx
    properties:
      quota: {type: integer}
      secret: {type: string, sensitive: true}
customers:
  - id: top
    location: eu-west
    parent: null
    reseller:
      services:
        hx:
          plans: [p1]
          sals:
            s1: {quota: 10}
            s2: {nope: 1}
        ghost-svc:
          plans: [x]
  - id: plain
    location: eu-west
    parent: top
  - id: c1
    location: mars
    parent: nobody
    services:
      hx: {plan: p9, sal: s9, overrides: {quota: "big", secret: 42}}
  - id: c2
    location: eu-west
    parent: plain
    users:
      - id: u1
        services:
          hx: {sal: s1}
      - id: u1
  - id: c1
    location: eu-west
    parent: top
"""

BAD_SEED_PROBLEMS = [
    (5, 10, "$.locations[1].id: duplicate location id 'eu-west'"),
    (40, 9, "$.customers[4].id: duplicate customer id 'c1'"),
    (21, 24, "$.customers[0].reseller.services.hx.sals.s2.nope: unknown property 'nope' of service 'hx'"),
    (23, 11, "$.customers[0].reseller.services.ghost-svc: unknown service 'ghost-svc'"),
    (28, 15, "$.customers[2].location: customer 'c1': unknown location 'mars'"),
    (29, 13, "$.customers[2].parent: customer 'c1': unknown parent 'nobody'"),
    (31, 18, "$.customers[2].services.hx.plan: customer 'c1': unknown plan 'p9' of 'hx'"),
    (31, 27, "$.customers[2].services.hx.sal: customer 'c1': unknown SAL 's9' of 'hx'"),
    (31, 50, "$.customers[2].services.hx.overrides.quota: property 'quota' must be integer, got 'big'"),
    (31, 65, None),  # the sensitive `secret` of the wrong type: its value is never shown
    (34, 13, "$.customers[3].parent: customer 'c2': parent 'plain' is not a reseller"),
    (38, 15, "$.customers[3].users[0].services.hx: user 'u1': customer 'c2' does not subscribe to 'hx'"),
    (39, 13, "$.customers[3].users[1].id: duplicate user id 'u1' (also in customer 'c2')"),
]


def write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


def minimal(**extra: Any) -> dict[str, Any]:
    return {"apiVersion": "reconciler/v1", "kind": "Platform", **extra}


def read_error(file: str) -> str:
    with pytest.raises(PlatformError) as e:
        seeds.read(file)
    return e.value.message


def test_the_fixture_seed_reads() -> None:
    s = seeds.read(str(SEED))
    assert [c["id"] for c in s.doc["customers"]][:3] == ["contoso", "northwind", "woodgrove"]
    assert s.doc["requests"] == []


def test_a_minimal_document_has_no_problems() -> None:
    assert seeds.check(Doc(file="x", index=0, line=1, data=minimal())) == []


def test_minimal_seed_gets_every_collection(tmp_path: Path) -> None:
    s = seeds.read(write(tmp_path, "s.yaml", "apiVersion: reconciler/v1\nkind: Platform\n"))
    assert s.doc == minimal(locations=[], services=[], customers=[], requests=[])


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    f = write(tmp_path, "seed.yaml", BAD_SEED)
    message = read_error(f)
    lines = message.splitlines()
    assert lines[0] == f"{f}: the seed has {len(BAD_SEED_PROBLEMS)} problem(s); nothing was created:"
    assert len(lines) == 1 + len(BAD_SEED_PROBLEMS)
    for got, (line, col, text) in zip(lines[1:], BAD_SEED_PROBLEMS, strict=True):
        assert got.startswith(f"{f}:{line}:{col}: error[seed]: ")
        if text is not None:
            assert got == f"{f}:{line}:{col}: error[seed]: {text}"
    secret = lines[1 + 9]
    assert "$.customers[2].services.hx.overrides.secret: property 'secret' must be string" in secret
    assert "42" not in secret.removeprefix(str(f))  # the value is never shown (the temp path may hold a 42)


def test_check_returns_seed_diagnostics_with_paths(tmp_path: Path) -> None:
    (doc,) = load_all(BAD_SEED, "s.yaml")
    assert isinstance(doc, Doc)
    diags = seeds.check(doc)
    assert {d.code for d in diags} == {"seed"}
    assert all(d.is_error for d in diags)
    assert [(d.line, d.column) for d in diags] == [(line, col) for line, col, _ in BAD_SEED_PROBLEMS]
    assert diags[0].path == "$.locations[1].id"


def test_json_seed_lists_the_same_problems_without_positions(tmp_path: Path) -> None:
    f = write(tmp_path, "seed.json", json.dumps(yaml.safe_load(BAD_SEED), indent=1))
    lines = read_error(f).splitlines()
    assert len(lines) == 1 + len(BAD_SEED_PROBLEMS)
    for got, (_, _, text) in zip(lines[1:], BAD_SEED_PROBLEMS, strict=True):
        if text is not None:
            assert got == f"{f}: error[seed]: {text}"


def test_a_json_seed_reads_like_its_yaml(tmp_path: Path) -> None:
    data = yaml.safe_load(SEED.read_text())
    f = write(tmp_path, "seed.json", json.dumps(data))
    assert seeds.read(f).doc == seeds.read(str(SEED)).doc


def test_schema_problems_come_first_and_alone(tmp_path: Path) -> None:
    # A schema problem stops the reference checks: their paths could be meaningless.
    text = BAD_SEED.replace("  - id: plain\n", "  - id: plain\n    colour: blue\n")
    lines = read_error(write(tmp_path, "seed.yaml", text)).splitlines()
    assert lines[1:] == [f"{tmp_path}/seed.yaml:25:5: error[schema]: $.customers[1].colour: unknown key 'colour' "
                         "(allowed here: id, location, name, parent, reseller, services, users)"]


@pytest.mark.parametrize("data, expected", [
    (minimal(kind="CustomerMove"), "$.kind: expected 'Platform', got 'CustomerMove'"),
    (minimal(locations=[{"id": "bad id"}]),
     "$.locations[0].id: 'bad id' does not match ^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"),
    (minimal(services=[{"id": "s", "properties": {"p": {"type": "float"}}}]),
     "$.services[0].properties.p.type: expected one of 'string', 'integer', 'number', 'boolean'; got 'float'"),
])
def test_schema_problems(tmp_path: Path, data: dict[str, Any], expected: str) -> None:
    f = write(tmp_path, "seed.json", json.dumps(data))
    assert read_error(f).splitlines()[1:] == [f"{f}: error[schema]: {expected}"]


def test_parent_cycles_top_level_customers_and_requests(tmp_path: Path) -> None:
    f = write(tmp_path, "seed.yaml", "apiVersion: reconciler/v1\nkind: Platform\nlocations: [{id: l}]\ncustomers:\n"
              " - {id: a, location: l, parent: b, reseller: {}}\n - {id: b, location: l, parent: a, reseller: {}}\n"
              " - {id: c, location: l}\nrequests:\n - {id: r1, type: CustomerMove, customer: zz, status: Requested}\n"
              " - {id: r1, type: CustomerMove, customer: c, status: Failed}\n")
    assert read_error(f).splitlines()[1:] == [
        f"{f}:5:33: error[seed]: $.customers[0].parent: customer 'a': the parent chain loops back to it",
        f"{f}:6:33: error[seed]: $.customers[1].parent: customer 'b': the parent chain loops back to it",
        f"{f}:7:4: error[seed]: $.customers[2].parent: customer 'c' has no parent; only a top-level reseller may",
        f"{f}:9:43: error[seed]: $.requests[0].customer: request 'r1': unknown customer 'zz'",
        f"{f}:10:9: error[seed]: $.requests[1].id: duplicate request id 'r1'",
    ]


def test_sal_property_of_the_wrong_type(tmp_path: Path) -> None:
    data = yaml.safe_load(SEED.read_text())
    data["customers"][1]["reseller"]["services"]["hosted-exchange"]["sals"]["premium"]["activeSync"] = "yes"
    data["customers"][5]["users"][0]["services"]["hosted-exchange"]["overrides"] = {"journalPassword": 1234567}
    f = write(tmp_path, "seed.json", json.dumps(data))
    message = read_error(f)
    assert message.splitlines()[1:] == [
        f"{f}: error[seed]: $.customers[1].reseller.services.hosted-exchange.sals.premium.activeSync: "
        "property 'activeSync' must be boolean, got 'yes'",
        f"{f}: error[seed]: $.customers[5].users[0].services.hosted-exchange.overrides.journalPassword: "
        "property 'journalPassword' must be string, got an integer",
    ]
    assert "1234567" not in message


def test_sensitive_values_of_the_right_type_never_appear_in_messages(tmp_path: Path) -> None:
    data = yaml.safe_load(SEED.read_text())
    data["customers"].append({"id": "stray", "location": "nowhere", "parent": "contoso",
                              "services": {"hosted-exchange": {"plan": "exchange-basic", "sal": "standard",
                                                               "overrides": {"journalPassword": "Top-Secret-1"}}}})
    message = read_error(write(tmp_path, "seed.json", json.dumps(data)))
    assert "unknown location 'nowhere'" in message
    assert "Top-Secret-1" not in message


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    f = write(tmp_path, "seed.json", '{"a": 1,\n "b": }')
    assert read_error(f) == f"{f}:2:7: error[yaml]: not valid JSON: Expecting value"


def test_yaml_problems_in_a_seed(tmp_path: Path) -> None:
    f = write(tmp_path, "seed.yaml", "apiVersion: reconciler/v1\nkind: Platform\nkind: Platform\n")
    assert read_error(f) == f"{f}:3:1: error[yaml]: duplicate key 'kind' (first at line 2)"
    f = write(tmp_path, "tagged.yaml", "apiVersion: reconciler/v1\nkind: !!python/name:os.system Platform\n")
    assert "tags" in read_error(f)


def test_a_seed_holds_one_document(tmp_path: Path) -> None:
    f = write(tmp_path, "two.yaml", "apiVersion: reconciler/v1\nkind: Platform\n---\napiVersion: reconciler/v1\n")
    assert read_error(f) == f"{f}:4:1: error[yaml]: a seed holds one document"


@pytest.mark.parametrize("text", ["", "# nothing\n", "---\n", "null\n"])
def test_an_empty_seed(tmp_path: Path, text: str) -> None:
    f = write(tmp_path, "empty.yaml", text)
    assert read_error(f) == f"{f}: the seed is empty"


def test_a_missing_seed(tmp_path: Path) -> None:
    f = str(tmp_path / "nope.yaml")
    assert read_error(f) == f"{f}: cannot read the seed: No such file or directory"


def test_a_seed_that_is_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "latin.yaml"
    p.write_bytes(b"apiVersion: reconciler/v1\nkind: Platform\nlocations: [{id: l, name: Caf\xe9}]\n")
    assert read_error(str(p)).startswith(f"{p}:3:30: error[yaml]: not valid UTF-8 (byte 0xe9")


def test_a_user_service_of_an_unknown_service(tmp_path: Path) -> None:
    data = yaml.safe_load(SEED.read_text())
    data["customers"][5]["users"][0]["services"]["crm"] = {"sal": "standard"}
    f = write(tmp_path, "seed.json", json.dumps(data))
    assert read_error(f).splitlines()[1:] == [
        f"{f}: error[seed]: $.customers[5].users[0].services.crm: user 'alice@acme.example': unknown service 'crm'"]


# -- issue 9 item 9: an id with a final newline; references outside their scope are warnings -----
def fixture_seed() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SEED.read_text())
    return data


def _with_newline_in(where: str) -> tuple[dict[str, Any], str]:
    """The fixture seed with one id given a final newline; the JSON path of the schema problem it makes."""
    data = fixture_seed()
    contoso_exchange = data["customers"][0]["reseller"]["services"]["hosted-exchange"]
    if where == "location":
        data["locations"][1]["id"] = "us-east\n"
        return data, "$.locations[1].id: 'us-east\\n'"
    if where == "service":
        data["services"][1]["id"] = "sharepoint\n"
        return data, "$.services[1].id: 'sharepoint\\n'"
    if where == "property":
        props = data["services"][1]["properties"]
        props["storageMB\n"] = props.pop("storageMB")
        return data, '$.services[1].properties["storageMB\\n"]: key \'storageMB\\n\''
    if where == "customer":
        data["customers"][2]["id"] = "woodgrove\n"
        return data, "$.customers[2].id: 'woodgrove\\n'"
    if where == "plan":
        contoso_exchange["plans"][1] = "exchange-pro\n"
        return data, "$.customers[0].reseller.services.hosted-exchange.plans[1]: 'exchange-pro\\n'"
    assert where == "sal"
    contoso_exchange["sals"]["legacy\n"] = contoso_exchange["sals"].pop("legacy")
    return data, '$.customers[0].reseller.services.hosted-exchange.sals["legacy\\n"]: key \'legacy\\n\''


@pytest.mark.parametrize("where", ["location", "service", "property", "customer", "plan", "sal"])
def test_an_id_with_a_final_newline_is_refused(tmp_path: Path, where: str) -> None:
    data, problem = _with_newline_in(where)
    f = write(tmp_path, "seed.json", json.dumps(data))
    assert read_error(f).splitlines() == [
        f"{f}: the seed has 1 problem(s); nothing was created:",
        f"{f}: error[schema]: {problem} does not match ^[A-Za-z0-9][A-Za-z0-9._@-]{{0,127}}$"]


def test_a_user_id_with_a_final_newline_is_refused(tmp_path: Path) -> None:
    data = fixture_seed()
    data["customers"][5]["users"][0]["id"] = "alice@acme.example\n"
    f = write(tmp_path, "seed.json", json.dumps(data))
    lines = read_error(f).splitlines()
    assert len(lines) == 2 and lines[1].startswith(f"{f}: error[schema]: $.customers[5].users[0].id: String should "
                                                   "match pattern"), lines


def half_done_move() -> dict[str, Any]:
    """acme re-parented to northwind, its subscriptions and users not yet; initech moved to another location."""
    data = fixture_seed()
    data["customers"][5]["parent"] = "northwind"
    data["customers"][6]["location"] = "us-east"
    return data


HALF_DONE_WARNINGS = [
    "$.customers[5].services.hosted-exchange.plan: customer 'acme': plan 'exchange-basic' of 'hosted-exchange' is "
    "not offered by its parent 'northwind'",
    "$.customers[5].services.hosted-exchange.sal: customer 'acme': SAL 'standard' of 'hosted-exchange' is not "
    "offered by its parent 'northwind'",
    "$.customers[5].users[1].services.hosted-exchange.sal: user 'bob@acme.example': SAL 'standard' of "
    "'hosted-exchange' is not offered by 'northwind', the parent of customer 'acme'",
    "$.customers[5].users[2].services.hosted-exchange.sal: user 'carol@acme.example': SAL 'standard' of "
    "'hosted-exchange' is not offered by 'northwind', the parent of customer 'acme'",
    "$.customers[6].location: customer 'initech' is in location 'us-east', its parent 'northwind' in 'eu-west'",
]


def test_references_outside_their_scope_are_warnings(tmp_path: Path) -> None:
    f = write(tmp_path, "seed.json", json.dumps(half_done_move()))
    s = seeds.read(f)
    assert [w.format() for w in s.warnings] == [f"{f}: warning[seed]: {w}" for w in HALF_DONE_WARNINGS]


def test_a_yaml_seed_places_its_scope_warnings(tmp_path: Path) -> None:
    text = SEED.read_text().replace("    location: eu-west\n    parent: northwind\n",
                                    "    location: us-east\n    parent: northwind\n")
    f = write(tmp_path, "seed.yaml", text)
    assert [w.format() for w in seeds.read(f).warnings] == [
        f"{f}:109:15: warning[seed]: $.customers[6].location: customer 'initech' is in location 'us-east', its parent "
        "'northwind' in 'eu-west'"]


def test_platform_init_says_each_warning_and_the_export_seeds_again(tmp_path: Path) -> None:
    from conftest import run_main

    f = write(tmp_path, "seed.json", json.dumps(half_done_move()))
    url = f"sqlite:///{tmp_path / 'p.db'}"
    r = run_main("platform", "init", "--platform", url, "--seed", f)
    assert r.code == 0, r
    assert r.err == "".join(f"{f}: warning[seed]: {w}\n" for w in HALF_DONE_WARNINGS)
    assert r.out.startswith(f"Created {url}: ")
    for fmt in ("yaml", "json"):
        exported = run_main("platform", "export", "--platform", url, "--format", fmt)
        assert exported.code == 0, exported
        again = write(tmp_path, f"again.{fmt}", exported.out)
        r = run_main("platform", "init", "--platform", f"sqlite:///{tmp_path / fmt}.db", "--seed", again)
        assert r.code == 0, r
        assert len(r.err.splitlines()) == len(HALF_DONE_WARNINGS), r
