"""The domain values: property typing, MoveOrder JSON, canonical JSON and digests."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import manifests
from reconciler.model import (
    Customer,
    MoveOrder,
    Offering,
    PropertyDef,
    Request,
    Subscription,
    canonical_json,
    conceal,
    conceal_customer,
    customer_fingerprint,
    sha256_of,
)

# -- PropertyDef.accepts -----------------------------------------------------------------------------

ACCEPTS: list[tuple[str, Any, bool]] = [
    ("boolean", True, True), ("boolean", False, True), ("boolean", 1, False), ("boolean", 0, False),
    ("boolean", "true", False), ("boolean", 1.0, False),
    ("integer", 0, True), ("integer", -5, True), ("integer", True, False), ("integer", False, False),
    ("integer", 2**63 - 1, True), ("integer", -(2**63), True), ("integer", 2**63, False),
    ("integer", -(2**63) - 1, False), ("integer", 10**30, False), ("integer", 1.5, False), ("integer", "1", False),
    ("number", 0, True), ("number", 1.5, True), ("number", -2.25, True), ("number", 10**30, True),
    ("number", math.nan, False), ("number", math.inf, False), ("number", -math.inf, False),
    ("number", True, False), ("number", "1.5", False),
    ("string", "x", True), ("string", "", True), ("string", 1, False), ("string", True, False),
    ("string", ["x"], False), ("string", {"a": "b"}, False),
]


@pytest.mark.parametrize(("type_", "value", "ok"), ACCEPTS, ids=[f"{t}-{v!r}" for t, v, _ in ACCEPTS])
def test_property_accepts(type_: Any, value: Any, ok: bool) -> None:
    assert PropertyDef("p", type_).accepts(value) is ok
    assert PropertyDef("p", type_, sensitive=True).accepts(value) is ok  # sensitivity changes nothing


@pytest.mark.parametrize("type_", ["string", "integer", "number", "boolean"])
def test_null_is_accepted_by_every_type(type_: Any) -> None:
    """null removes an override: it is never a type error."""
    assert PropertyDef("p", type_).accepts(None) is True


# -- customers and requests --------------------------------------------------------------------------

def test_is_reseller_means_having_offerings() -> None:
    plain = Customer("acme", "Acme", "eu-west", "contoso", None, {})
    empty_reseller = Customer("r", "R", "eu-west", None, {}, {})
    assert (plain.is_reseller, empty_reseller.is_reseller) == (False, True)
    full = Customer("n", "N", "eu-west", None, {"x": Offering("x", ("p",), {"s": {}}, 5)}, {})
    assert full.is_reseller


def test_request_to_json_fields() -> None:
    r = Request("rq-1", "CustomerMove", "acme", "Failed", "user bob: on hold", 4, 1, "t0", "t1")
    assert r.to_json() == {"id": "rq-1", "type": "CustomerMove", "customer": "acme", "status": "Failed",
                           "error": "user bob: on hold", "sub_requests": 4, "failed_sub_requests": 1,
                           "submitted_at": "t0", "completed_at": "t1"}


# -- MoveOrder ---------------------------------------------------------------------------------------

ORDER = MoveOrder(
    customer="acme", to_reseller="northwind",
    subscriptions={"sharepoint": Subscription("sp-basic", "standard", {}),
                   "hosted-exchange": Subscription("nw-exchange", "nw-standard",
                                                   {"mailboxQuotaMB": 8192, "activeSync": False, "x": 1.5})},
    sal_map={"sharepoint": {"standard": "standard"},
             "hosted-exchange": {"standard": "nw-standard", "premium": "premium"}},
)


def test_move_order_to_json() -> None:
    d = ORDER.to_json()
    assert d == {
        "customer": "acme", "to_reseller": "northwind",
        "subscriptions": {
            "hosted-exchange": {"plan": "nw-exchange", "sal": "nw-standard",
                                "overrides": {"mailboxQuotaMB": 8192, "activeSync": False, "x": 1.5}},
            "sharepoint": {"plan": "sp-basic", "sal": "standard", "overrides": {}},
        },
        "sal_map": {"hosted-exchange": {"premium": "premium", "standard": "nw-standard"},
                    "sharepoint": {"standard": "standard"}},
    }
    # sorted, so the same order always serialises the same way
    assert list(d["subscriptions"]) == ["hosted-exchange", "sharepoint"]
    assert list(d["sal_map"]["hosted-exchange"]) == ["premium", "standard"]


def test_move_order_json_round_trip() -> None:
    again = MoveOrder.from_json(json.loads(json.dumps(ORDER.to_json())))
    assert again == ORDER
    assert again.to_json() == ORDER.to_json()
    assert MoveOrder.from_json(ORDER.to_json()) == ORDER


def test_move_order_from_json_copies_its_input() -> None:
    d = json.loads(json.dumps(ORDER.to_json()))
    order = MoveOrder.from_json(d)
    d["subscriptions"]["sharepoint"]["overrides"]["storageMB"] = 1
    d["sal_map"]["sharepoint"]["x"] = "y"
    assert order == ORDER


def test_move_order_to_json_shares_nothing_with_the_order() -> None:
    order = MoveOrder.from_json(ORDER.to_json())
    d = order.to_json()
    d["subscriptions"]["hosted-exchange"]["overrides"]["mailboxQuotaMB"] = 1
    d["sal_map"]["hosted-exchange"]["standard"] = "x"
    assert order == ORDER


# -- canonical JSON and digests ----------------------------------------------------------------------

def test_canonical_json_sorts_keys_without_spaces_and_keeps_unicode() -> None:
    assert canonical_json({"b": [1, 2, {"d": None, "c": "é"}], "a": 1}) == '{"a":1,"b":[1,2,{"c":"é","d":null}]}'
    assert canonical_json({"z": True, "y": 1.5, "x": "a\nb"}) == '{"x":"a\\nb","y":1.5,"z":true}'


def test_canonical_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": math.nan})


def test_sha256_of_is_stable() -> None:
    value = {"b": [1, 2, {"d": None, "c": "é"}], "a": 1}
    expected = hashlib.sha256('{"a":1,"b":[1,2,{"c":"é","d":null}]}'.encode()).hexdigest()
    assert sha256_of(value) == expected
    # a fixed value: digests are recorded in state files, so their recipe must never change
    assert expected == "46d4b45d3d19039ee56fbeb651b6db39bac523eba8c181819856ebf7d1a5c037"
    assert sha256_of({"a": 1, "b": [1, 2, {"c": "é", "d": None}]}) == expected  # key order does not matter
    assert sha256_of({"a": 1, "b": [2, 1, {"c": "é", "d": None}]}) != expected  # list order does


def test_manifest_digest_is_sha256_of_the_canonical_document(tmp_path: Path) -> None:
    text = ("# a comment\nkind: CustomerMove\napiVersion: reconciler/v1\n"
            "metadata: {name: acme-to-northwind, ticket: CHG-1}\n"
            "spec:\n  toReseller: northwind\n  customer: acme\n  location: eu-west\n")
    reordered = ("apiVersion: reconciler/v1\nkind: CustomerMove\nmetadata:\n  ticket: CHG-1\n"
                 "  name: acme-to-northwind\nspec:\n  customer: acme\n  location: eu-west\n  toReseller: northwind\n")
    (tmp_path / "a.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "b.yaml").write_text(reordered, encoding="utf-8")
    (a,) = manifests.load([str(tmp_path / "a.yaml")]).moves
    (b,) = manifests.load([str(tmp_path / "b" / "b.yaml")]).moves
    assert a.digest == sha256_of(yaml.safe_load(text))
    assert a.digest == b.digest  # layout, comments and key order do not count; metadata does
    (tmp_path / "c.yaml").write_text(text.replace("CHG-1", "CHG-2"), encoding="utf-8")
    (c,) = manifests.load([str(tmp_path / "c.yaml")]).moves
    assert c.digest != a.digest


def test_customer_fingerprint_covers_the_customer_and_what_its_parent_offers_it() -> None:
    """Computed from what was read, never from a digest the platform keeps (issue 9, item 6)."""
    subs = {"mail": Subscription("p", "s", {"quota": 1})}
    parent = Customer("r", "R", "eu", None, {"mail": Offering("mail", ("p",), {"s": {"quota": 1}})}, {})
    cust = Customer("acme", "Acme", "eu", "r", None, subs)
    fp = customer_fingerprint(cust, parent)
    assert fp == customer_fingerprint(Customer("acme", "Acme", "eu", "r", None, dict(subs)), parent)
    assert fp != customer_fingerprint(Customer("acme", "Acme", "eu", "r2", None, subs), parent)
    assert fp != customer_fingerprint(Customer("acme", "Acme", "eu", "r", None,
                                               {"mail": Subscription("p", "s", {"quota": 2})}), parent)
    changed_sal = Customer("r", "R", "eu", None, {"mail": Offering("mail", ("p",), {"s": {"quota": 9}})}, {})
    assert fp != customer_fingerprint(cust, changed_sal)  # an UPDATE of the offering's SAL values shows


def test_customer_fingerprint_is_the_digest_of_its_canonical_document_with_or_without_a_cache() -> None:
    """States record these fingerprints: the formula must never change. The cache of what a parent offers
    (issue 14) gives the very same digest, and a cached parent never stands for another one."""
    secret = {"mail": {"pw"}}
    parent = Customer("r", "R", "eu", None, {"mail": Offering("mail", ("p",), {"s": {"quota": 1, "pw": "x"}})}, {})
    other = Customer("r2", "R2", "eu", None, {"mail": Offering("mail", ("p",), {"s": {"quota": 5}})}, {})
    cust = Customer("acme", "Acme", "eu", "r", None, {"mail": Subscription("p", "s", {"pw": "secret"})})
    offered = {"mail": {**parent.offerings["mail"].to_json(), "sals": {"s": {"quota": 1, "pw": conceal("x")}}}}
    want = sha256_of({"customer": conceal_customer(cust.to_json(), secret), "offered": offered})
    cache: dict[Any, str] = {}
    assert customer_fingerprint(cust, parent, secret) == want
    assert customer_fingerprint(cust, parent, secret, cache) == want and len(cache) == 1
    assert customer_fingerprint(cust, parent, secret, cache) == want
    assert customer_fingerprint(cust, other, secret, cache) == customer_fingerprint(cust, other, secret) != want


@pytest.mark.parametrize(("a", "b"), [(1, True), (0, False), (1, 1.0), (0.0, -0.0), ("1", 1), ("", None)])
def test_conceal_tells_values_json_tells_apart(a: Any, b: Any) -> None:
    for _ in range(2):  # the second time from the cache
        assert conceal(a) != conceal(b)
        assert conceal(a) == f"(sensitive sha256:{sha256_of(a)})" or a is None
