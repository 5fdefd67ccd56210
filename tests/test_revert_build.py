"""revert.build, the manifest of the way back, from the platform's record of what the move replaced: plans,
SALs (each mapped back to the one most of its holders had), customer overrides restored or removed, sensitive
ones named only; and its refusals."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from reconciler.errors import ReconcilerError
from reconciler.model import Customer, PropertyDef, Service, Subscription, User, UserService
from reconciler.revert import build, check_revertible, revert_name
from reconciler.state import MoveRecord
from reconciler.state.model import ManifestRef, RequestRecord

CATALOG = {"mail": Service("mail", "Mail", {"quota": PropertyDef("quota", "integer"),
                                            "pw": PropertyDef("pw", "string", sensitive=True),
                                            "tags": PropertyDef("tags", "string"),
                                            "note": PropertyDef("note", "string")}),
           "web": Service("web", "Web", {})}
REC = MoveRecord(manifest=ManifestRef(file="moves/m.yaml", sha256="sha256:x"), customer="c1", from_reseller="r0",
                 to_reseller="r1", status="applied", requests=[RequestRecord(id="rq-1", status="Provisioned")])


def _customer(parent: str | None = "r1", subs: dict[str, Subscription] | None = None) -> Customer:
    return Customer("c1", "C1", "eu", parent, None, subs if subs is not None else {
        "mail": Subscription("p-new", "gold", {"quota": 5, "note": "added", "pw": "new", "tags": "x"}),
        "web": Subscription("w", "", {})})


REPLACED: dict[str, Any] = {
    "parent": "r0",
    "subscriptions": {"mail": {"plan": "p-old", "sal": "silver",
                               "overrides": {"quota": 2.5, "pw": "old", "tags": ["a", 1], "gone": None}}},
    "users": {"u1": {"mail": "silver"}, "u2": {"mail": "bronze"}, "u3": {"mail": "silver"}},
}
USERS = [User("u1", {"mail": UserService("gold")}), User("u2", {"mail": UserService("gold")}),
         User("u3", {"mail": UserService("gold")}), User("u4", {"web": UserService("std")}),
         User("u5", {"mail": UserService("plain")})]


def test_the_way_back_restores_plans_sals_and_overrides_and_names_sensitive_ones() -> None:
    out = build("m", REC, _customer(), REPLACED, USERS, CATALOG)
    doc = yaml.safe_load(out.manifest)
    assert out.manifest.startswith("# Moves c1 back from r1 to r0: written by `reconcile revert m`\n")
    assert doc["metadata"] == {"name": "m-revert", "description": "Reverts m"}
    assert doc["spec"]["toReseller"] == "r0" and doc["spec"]["location"] == "eu"
    mail = doc["spec"]["services"]["mail"]
    assert mail["plan"] == "p-old"
    # gold was silver for the customer and 2 users, bronze for 1: back to silver, said; plain stays plain
    assert mail["sals"] == {"gold": "silver"}
    assert "# gold was also bronze (1 user) before m" in out.manifest
    # restored: quota (a float before), tags (a list, as JSON); removed: note (the move added it); gone: null
    # before and absent now, so it is written back as null
    assert mail["properties"] == {"quota": 2.5, "tags": ["a", 1], "note": None, "gone": None}
    assert "pw" not in mail["properties"]
    assert "# pw is sensitive: restore its value on the platform by hand" in out.manifest
    assert doc["spec"]["services"]["web"] is None  # nothing to restore: no plan before, no SALs, no overrides
    assert out.warnings == [
        "mail: SAL gold goes back to silver, which most of its users held; the others held bronze (1 user)",
        "mail: the sensitive property pw is not written; restore it on the platform"]


def test_values_keep_their_yaml_types() -> None:
    replaced = {"parent": "r0", "subscriptions": {"mail": {"plan": "p", "sal": "gold", "overrides": {
        "quota": 3, "note": "yes", "tags": True}}}}
    cust = _customer(subs={"mail": Subscription("p", "gold", {"quota": 4, "note": "no", "tags": False})})
    doc = yaml.safe_load(build("m", REC, cust, replaced, [], CATALOG).manifest)
    assert doc["spec"]["services"]["mail"]["properties"] == {"quota": 3, "note": "yes", "tags": True}
    assert "sals" not in doc["spec"]["services"]["mail"]


def test_a_customer_without_subscriptions_goes_back_with_none() -> None:
    out = build("m", REC, _customer(subs={}), {"parent": "r0"}, [], CATALOG)
    assert "services" not in yaml.safe_load(out.manifest)["spec"] and out.warnings == []


@pytest.mark.parametrize(("cust", "replaced", "message"), [
    (None, REPLACED, "'c1' no longer exists, not under 'r1' where 'm' put it: there is nothing to revert"),
    (_customer(parent="r9"), REPLACED, "'c1' is under r9, not under 'r1' where 'm' put it"),
    (_customer(), None, "the platform keeps no record of what 'm' replaced (request rq-1)"),
    (_customer(), {"subscriptions": {}}, "the platform keeps no record of what 'm' replaced"),
])
def test_refusals_say_why(cust: Customer | None, replaced: dict[str, Any] | None, message: str) -> None:
    with pytest.raises(ReconcilerError) as e:
        build("m", REC, cust, replaced, [], CATALOG)
    assert e.value.message.startswith(message), e.value.message


def test_only_a_recorded_applied_move_is_revertible() -> None:
    with pytest.raises(ReconcilerError, match="no recorded move named 'm'"):
        check_revertible("m", None)


def test_a_long_name_gets_a_revert_name_within_63_characters() -> None:
    name = "a" * 50 + "-" + "b" * 20
    assert revert_name(name) == "a" * 50 + "-" + "b" * 5 + "-revert" and len(revert_name(name)) == 63
    assert revert_name("a" * 55 + "-x") == "a" * 55 + "-revert"
