"""What a move means per service: plan, SAL mappings, new customer overrides, effective properties."""

from __future__ import annotations

from typing import Any

from reconciler.manifests import ServiceSpec
from reconciler.mapping import SalMapping, resolve, sals_in_use
from reconciler.model import Customer, Offering, Subscription, User, UserService, effective

EX, SP = "hosted-exchange", "sharepoint"

NW_SALS = {"nw-standard": {"mailboxQuotaMB": 4096, "activeSync": True, "archive": False},
           "premium": {"mailboxQuotaMB": 20480, "activeSync": True, "archive": True}}
NORTHWIND = Customer("northwind", "Northwind", "eu-west", None,
                     {EX: Offering(EX, ("nw-exchange",), NW_SALS, 100),
                      SP: Offering(SP, ("sp-basic",), {"standard": {"storageMB": 5120}})}, {})


def acme(ex_overrides: dict[str, Any] | None = None) -> Customer:
    return Customer("acme", "Acme", "eu-west", "contoso", None,
                    {EX: Subscription("exchange-basic", "standard", ex_overrides or {}),
                     SP: Subscription("sp-basic", "standard", {})})


def u(uid: str, **services: str | tuple[str, dict[str, Any]]) -> User:
    out = {}
    for svc, v in services.items():
        sal, ov = (v, {}) if isinstance(v, str) else v
        out[svc.replace("_", "-")] = UserService(sal, ov)
    return User(uid, out)


# -- sals_in_use -------------------------------------------------------------------------------------

def test_sals_in_use_default_first_then_users_by_first_use() -> None:
    users = [u("a", hosted_exchange="premium"), u("b", hosted_exchange="legacy", sharepoint="business"),
             u("c", hosted_exchange="standard"), u("d", hosted_exchange="premium", sharepoint="standard")]
    assert sals_in_use(acme(), users) == {EX: ["standard", "premium", "legacy"], SP: ["standard", "business"]}


def test_sals_in_use_without_users_is_the_defaults() -> None:
    assert sals_in_use(acme(), []) == {EX: ["standard"], SP: ["standard"]}


def test_sals_in_use_lists_a_users_service_the_customer_does_not_subscribe_to() -> None:
    c = Customer("x", "X", "eu-west", "contoso", None, {EX: Subscription("p", "standard")})
    assert sals_in_use(c, [u("a", sharepoint="standard")]) == {EX: ["standard"], SP: ["standard"]}


# -- resolve -----------------------------------------------------------------------------------------

def test_resolve_explicit_name_and_unmatched_mappings_in_use_order() -> None:
    in_use = {EX: ["standard", "premium", "legacy"], SP: ["standard"]}
    spec = {EX: ServiceSpec(plan="nw-exchange", sals={"standard": "nw-standard", "unused": "premium"})}
    res = resolve(acme(), NORTHWIND, spec, in_use)
    ex = res[EX]
    assert list(res) == [EX, SP]
    assert (ex.plan_to, ex.plan_explicit, ex.plan_known) == ("nw-exchange", True, True)
    assert list(ex.mappings.values()) == [SalMapping("standard", "nw-standard", "explicit", True),
                                          SalMapping("premium", "premium", "name", True),
                                          SalMapping("legacy", None, None, False)]
    assert ex.sal_map == {"standard": "nw-standard", "premium": "premium"}  # the unmatched one is left out
    assert (ex.target("standard"), ex.target("legacy"), ex.target("never-seen")) == ("nw-standard", "legacy",
                                                                                      "never-seen")
    assert ex.new_subscription() == Subscription("nw-exchange", "nw-standard", {})
    sp = res[SP]
    assert (sp.plan_to, sp.plan_explicit, sp.plan_known) == ("sp-basic", False, True)
    assert list(sp.mappings.values()) == [SalMapping("standard", "standard", "name", True)]


def test_resolve_explicit_mapping_wins_over_a_same_id_sal() -> None:
    res = resolve(acme(), NORTHWIND, {EX: ServiceSpec(sals={"premium": "nw-standard"})},
                  {EX: ["standard", "premium"]})
    assert res[EX].mappings["premium"] == SalMapping("premium", "nw-standard", "explicit", True)


def test_resolve_explicit_mapping_to_an_unknown_sal_is_kept_but_not_known() -> None:
    res = resolve(acme(), NORTHWIND, {EX: ServiceSpec(sals={"standard": "nw-gold"})}, {EX: ["standard"]})
    assert res[EX].mappings["standard"] == SalMapping("standard", "nw-gold", "explicit", False)


def test_resolve_default_plan_is_the_same_id_and_may_be_unknown() -> None:
    ex = resolve(acme(), NORTHWIND, {}, {})[EX]
    assert (ex.plan_to, ex.plan_explicit, ex.plan_known) == ("exchange-basic", False, False)
    assert ex.in_use == ["standard"]  # no in_use given: the customer's default


def test_resolve_a_service_the_destination_does_not_offer() -> None:
    dest = Customer("woodgrove", "W", "eu-west", None, {EX: Offering(EX, ("exchange-basic",), {"standard": {}})}, {})
    sp = resolve(acme(), dest, {SP: ServiceSpec(sals={"standard": "standard"})}, {})[SP]
    assert sp.offering is None and not sp.plan_known
    assert sp.mappings["standard"] == SalMapping("standard", "standard", "explicit", False)


def test_move_overrides_become_customer_overrides_and_null_removes_one() -> None:
    spec = {EX: ServiceSpec(properties={"mailboxQuotaMB": 8192, "activeSync": None, "archive": None})}
    ex = resolve(acme({"activeSync": False, "journalPassword": "s"}), NORTHWIND, spec, {})[EX]
    assert ex.new_overrides == {"journalPassword": "s", "mailboxQuotaMB": 8192}
    assert ex.current.overrides == {"activeSync": False, "journalPassword": "s"}  # not changed in place


# -- effective properties ----------------------------------------------------------------------------

def test_effective_order_sal_then_customer_then_user() -> None:
    sal = {"mailboxQuotaMB": 2048, "activeSync": True, "archive": False}
    assert effective(sal, {}, {}) == sal
    assert effective(sal, {"mailboxQuotaMB": 8192, "archive": True}, {}) == {
        "mailboxQuotaMB": 8192, "activeSync": True, "archive": True}
    assert effective(sal, {"mailboxQuotaMB": 8192}, {"mailboxQuotaMB": 3000, "activeSync": False}) == {
        "mailboxQuotaMB": 3000, "activeSync": False, "archive": False}
    assert effective(None, {"a": 1}, {"b": 2}) == {"a": 1, "b": 2}
    assert sal == {"mailboxQuotaMB": 2048, "activeSync": True, "archive": False}  # inputs untouched


def test_a_move_override_reaches_users_but_a_user_override_still_wins() -> None:
    """The contract's sentence, end to end: the move's override becomes the customer's; the user's still wins."""
    spec = {EX: ServiceSpec(sals={"standard": "nw-standard"}, properties={"mailboxQuotaMB": 8192})}
    ex = resolve(acme({"activeSync": False}), NORTHWIND, spec, {EX: ["standard"]})[EX]
    plain, own = UserService("standard", {}), UserService("standard", {"mailboxQuotaMB": 3000})
    dest_sal = NW_SALS[ex.target("standard")]
    assert effective(dest_sal, ex.new_overrides, plain.overrides) == {
        "mailboxQuotaMB": 8192, "activeSync": False, "archive": False}
    assert effective(dest_sal, ex.new_overrides, own.overrides) == {
        "mailboxQuotaMB": 3000, "activeSync": False, "archive": False}
    # no override at all: users inherit the new SAL's properties
    bare = resolve(acme(), NORTHWIND, {EX: ServiceSpec(sals={"standard": "nw-standard"})}, {})[EX]
    assert effective(NW_SALS[bare.target("standard")], bare.new_overrides, {}) == NW_SALS["nw-standard"]
