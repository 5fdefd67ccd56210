"""schema: the shipped JSON Schemas and the messages, JSON paths and positions of their diagnostics."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from reconciler import manifests, schema
from reconciler.diagnostics import Diagnostic

GOOD: dict[str, Any] = {
    "apiVersion": "reconciler/v1", "kind": "CustomerMove",
    "metadata": {"name": "acme-to-northwind", "ticket": "CHG-1", "description": "why"},
    "spec": {"customer": "acme", "toReseller": "northwind", "location": "eu-west",
             "services": {"hosted-exchange": {"plan": "nw-exchange", "sals": {"standard": "nw-standard"},
                                              "properties": {"mailboxQuotaMB": 8192, "archive": None}}}},
}


def problems(instance: Any, name: str = "move") -> list[tuple[str, str | None, tuple[Any, ...], bool]]:
    out = []
    for d, path, at_key in schema.iter_diagnostics(name, instance):
        assert d.code == "schema" and d.severity == "error"
        out.append((d.message, d.path, path, at_key))
    return out


def messages(instance: Any, name: str = "move") -> list[str]:
    return [m for m, *_ in problems(instance, name)]


def edit(path: tuple[str, ...], value: Any = ..., doc: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of GOOD with `path` set to value (or removed with ...)."""
    d = copy.deepcopy(doc or GOOD)
    cur = d
    for p in path[:-1]:
        cur = cur[p]
    if value is ...:
        del cur[path[-1]]
    else:
        cur[path[-1]] = value
    return d


def test_the_shipped_schemas_load() -> None:
    for name in ("move", "platform"):
        doc = schema.load(name)
        assert doc["$schema"].startswith("https://json-schema.org/draft/2020-12")
    assert schema.load("move")["properties"]["apiVersion"] == {"const": "reconciler/v1",
                                                              "description": "Always reconciler/v1."}


def test_a_good_manifest_has_no_problems() -> None:
    assert problems(GOOD) == []
    assert problems(edit(("spec", "services"))) == []
    assert problems(edit(("metadata", "ticket"))) == []


# -- required -------------------------------------------------------------------------------
@pytest.mark.parametrize("path, message, at", [
    (("apiVersion",), "$: 'apiVersion' is required", "$"),
    (("metadata",), "$: 'metadata' is required", "$"),
    (("metadata", "name"), "$.metadata: 'name' is required", "$.metadata"),
    (("spec", "location"), "$.spec: 'location' is required", "$.spec"),
    (("spec", "toReseller"), "$.spec: 'toReseller' is required", "$.spec"),
])
def test_required(path: tuple[str, ...], message: str, at: str) -> None:
    ((msg, jp, p, at_key),) = problems(edit(path))
    assert msg == message
    assert jp == at
    assert at_key is False


# -- unknown keys ---------------------------------------------------------------------------
@pytest.mark.parametrize("path, message", [
    (("foo",), "$.foo: unknown key 'foo' (allowed here: apiVersion, kind, metadata, spec)"),
    (("metadata", "labels"), "$.metadata.labels: unknown key 'labels' (allowed here: description, name, ticket)"),
    (("spec", "locaton"), "$.spec.locaton: unknown key 'locaton' (allowed here: allowLarge, customer, location, "
                          "services, toReseller)"),
    (("spec", "services", "hosted-exchange", "sal"),
     "$.spec.services.hosted-exchange.sal: unknown key 'sal' (allowed here: plan, properties, sals)"),
])
def test_unknown_keys_point_at_the_key_and_list_the_allowed_ones(path: tuple[str, ...], message: str) -> None:
    ((msg, jp, p, at_key),) = problems(edit(path, "x"))
    assert msg == message
    assert jp == schema.json_path(path)
    assert p == path
    assert at_key is True


def test_every_unknown_key_is_reported() -> None:
    doc = edit(("b",), 1, edit(("a",), 1))
    assert messages(doc) == [
        "$.a: unknown key 'a' (allowed here: apiVersion, kind, metadata, spec)",
        "$.b: unknown key 'b' (allowed here: apiVersion, kind, metadata, spec)",
    ]


def test_unknown_key_position_is_the_key_in_the_file(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text("apiVersion: reconciler/v1\nkind: CustomerMove\nmetadata:\n  name: a\n"
                 "spec:\n  customer: acme\n  toReseller: northwind\n  location: eu-west\n  colour: blue\n")
    loaded = manifests.load([str(f)])
    (d,) = loaded.diagnostics
    assert (d.line, d.column) == (9, 3)
    assert d.format() == (f"{f}:9:3: error[schema]: $.spec.colour: unknown key 'colour' "
                          "(allowed here: allowLarge, customer, location, services, toReseller)")


# -- type, const, pattern, maxLength ---------------------------------------------------------
@pytest.mark.parametrize("path, value, message", [
    (("spec", "customer"), 5, "$.spec.customer: expected a string, got an integer"),
    (("spec", "customer"), None, "$.spec.customer: expected a string, got null"),
    (("spec", "customer"), ["a"], "$.spec.customer: expected a string, got a list"),
    (("spec",), "acme", "$.spec: expected a mapping, got a string"),
    (("metadata",), [], "$.metadata: expected a mapping, got a list"),
    (("spec", "services"), [], "$.spec.services: expected a mapping, got a list"),
    (("spec", "services", "hosted-exchange", "properties", "mailboxQuotaMB"), {"a": 1},
     "$.spec.services.hosted-exchange.properties.mailboxQuotaMB: expected a string or a number or a boolean or "
     "null, got a mapping"),
    (("metadata", "ticket"), True, "$.metadata.ticket: expected a string, got a boolean"),
    (("metadata", "ticket"), 1.5, "$.metadata.ticket: expected a string, got a number"),
])
def test_type(path: tuple[str, ...], value: Any, message: str) -> None:
    assert messages(edit(path, value)) == [message]


def test_whole_document_of_the_wrong_type() -> None:
    assert messages(["a"]) == ["$: expected a mapping, got a list"]
    assert messages("text") == ["$: expected a mapping, got a string"]


@pytest.mark.parametrize("path, value, message", [
    (("apiVersion",), "reconciler/v2", "$.apiVersion: expected 'reconciler/v1', got 'reconciler/v2'"),
    (("kind",), "Platform", "$.kind: expected 'CustomerMove', got 'Platform'"),
    (("kind",), 3, "$.kind: expected 'CustomerMove', got 3"),
])
def test_const(path: tuple[str, ...], value: Any, message: str) -> None:
    assert messages(edit(path, value)) == [message]


@pytest.mark.parametrize("name", ["Acme", "acme_to_nw", "-acme", "acme-", "acme.nw", "ac me", ""])
def test_metadata_name_pattern(name: str) -> None:
    assert messages(edit(("metadata", "name"), name)) == [
        f"$.metadata.name: {name!r} does not match ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"]


@pytest.mark.parametrize("name", ["a", "0", "acme-to-northwind", "a" * 63, "a-1-b"])
def test_metadata_name_pattern_accepts(name: str) -> None:
    assert messages(edit(("metadata", "name"), name)) == []


def test_metadata_name_max_length() -> None:
    ((msg, jp, p, at_key),) = problems(edit(("metadata", "name"), "a" * 64))
    assert msg == "$.metadata.name: '" + "a" * 58 + "… is longer than 63 characters"
    assert jp == "$.metadata.name" and p == ("metadata", "name") and at_key is False


def test_description_max_length() -> None:
    assert messages(edit(("metadata", "description"), "x" * 10_001)) == [
        "$.metadata.description: '" + "x" * 58 + "… is longer than 10000 characters"]
    assert messages(edit(("metadata", "description"), "x" * 10_000)) == []


def test_id_pattern_on_spec_values() -> None:
    assert messages(edit(("spec", "toReseller"), "north wind")) == [
        "$.spec.toReseller: 'north wind' does not match ^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"]


def test_bad_map_keys_are_reported_at_the_key() -> None:
    doc = edit(("spec", "services", "bad svc!"), {})
    ((msg, jp, p, at_key),) = problems(doc)
    assert msg == '$.spec.services["bad svc!"]: key \'bad svc!\' does not match ^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$'
    assert jp == '$.spec.services["bad svc!"]'
    assert p == ("spec", "services", "bad svc!") and at_key is True


def test_values_in_messages_are_escaped_and_one_line() -> None:
    (msg,) = messages(edit(("spec", "customer"), "\x1b[31mred\nnext"))
    assert "\x1b" not in msg and "\n" not in msg
    assert msg == r"$.spec.customer: '\x1b[31mred\nnext' does not match ^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"


def test_several_problems_are_all_reported_sorted_by_path() -> None:
    doc = edit(("spec", "customer"), 1, edit(("kind",), "X", edit(("metadata", "name"), "Bad")))
    assert [jp for _, jp, _, _ in problems(doc)] == ["$.kind", "$.metadata.name", "$.spec.customer"]


# -- json_path ------------------------------------------------------------------------------
@pytest.mark.parametrize("path, expected", [
    ((), "$"),
    (("spec", "customer"), "$.spec.customer"),
    (("customers", 0, "users", 12, "id"), "$.customers[0].users[12].id"),
    (("services", "hosted-exchange"), "$.services.hosted-exchange"),
    (("a_b",), "$.a_b"),
    (("a.b",), '$["a.b"]'),
    (("1x",), '$["1x"]'),
    (("x y",), '$["x y"]'),
    (('q"uote',), '$["q\\"uote"]'),
    (("",), '$[""]'),
    (("a@b",), '$["a@b"]'),
    (("\n",), '$["\\n"]'),
])
def test_json_path_quoting(path: tuple[Any, ...], expected: str) -> None:
    assert schema.json_path(path) == expected


def test_diagnostic_path_is_the_json_path() -> None:
    d: Diagnostic
    for d, path, _ in schema.iter_diagnostics("move", edit(("spec", "services", "a.b"), [])):
        assert d.path == schema.json_path(path) == '$.spec.services["a.b"]'
        assert d.message.startswith('$.spec.services["a.b"]: ')


# -- the platform schema ----------------------------------------------------------------------
def test_platform_schema_paths_use_indexes() -> None:
    doc = {"apiVersion": "reconciler/v1", "kind": "Platform", "locations": [{"id": "eu"}],
           "customers": [{"id": "a", "location": "eu"}, {"id": "b"}]}
    assert messages(doc, "platform") == ["$.customers[1]: 'location' is required"]


def test_platform_schema_enum_message() -> None:
    doc = {"apiVersion": "reconciler/v1", "kind": "Platform",
           "services": [{"id": "s", "properties": {"p": {"type": "float"}}}]}
    assert messages(doc, "platform") == [
        "$.services[0].properties.p.type: expected one of 'string', 'integer', 'number', 'boolean'; got 'float'"]


def test_platform_schema_minimum_message() -> None:
    doc = {"apiVersion": "reconciler/v1", "kind": "Platform",
           "customers": [{"id": "r", "location": "eu", "reseller": {"services": {"s": {"maxUsers": -1}}}}]}
    assert messages(doc, "platform") == ["$.customers[0].reseller.services.s.maxUsers: -1 is less than 0"]
