"""`reconcile revert NAME` (contract section 12): apply a move, revert it, apply the revert, and every user's
effective properties are what they were before the move, proved on the platform's export."""

from __future__ import annotations

from typing import Any

import yaml
from conftest import Recon

EXCHANGE_UP = {"hosted-exchange": {"plan": "nw-exchange", "sals": {"standard": "nw-standard"},
                                   "properties": {"mailboxQuotaMB": 8192}}}


def effective(r: Recon) -> dict[str, Any]:
    """Each user's effective properties per service: the SAL's values, then customer and user overrides."""
    doc = r.export()
    offers = {c["id"]: (c.get("reseller") or {}).get("services", {}) for c in doc["customers"]}
    out: dict[str, Any] = {}
    for c in doc["customers"]:
        for u in c.get("users", []):
            for svc, us in u["services"].items():
                sal_values = offers[c["parent"]][svc]["sals"].get(us["sal"], {}) if c.get("parent") else {}
                sub = (c.get("services") or {}).get(svc) or {}
                out[f"{u['id']}/{svc}"] = {**sal_values, **(sub.get("overrides") or {}), **(us.get("overrides") or {})}
    return out


def test_apply_revert_apply_restores_every_user(recon: Recon) -> None:
    before_customer = recon.customer("globex")
    before = effective(recon)
    recon.manifest("globex-to-northwind", "globex", "northwind", services=EXCHANGE_UP)
    assert recon.cli("apply", "--auto-approve", str(recon.moves)).code == 0
    assert effective(recon) != before

    ran = recon.cli("revert", "globex-to-northwind")
    assert ran.code == 0, ran
    doc = yaml.safe_load(ran.out)
    assert doc["metadata"]["name"] == "globex-to-northwind-revert"
    assert (doc["spec"]["customer"], doc["spec"]["toReseller"]) == ("globex", "contoso")
    svc = doc["spec"]["services"]["hosted-exchange"]
    assert svc["plan"] == before_customer["services"]["hosted-exchange"]["plan"]
    assert svc["sals"] == {"nw-standard": "standard"}
    assert svc["properties"]["mailboxQuotaMB"] is None  # the move added it: the way back removes it
    (recon.moves / "globex-revert.yaml").write_text(ran.out, encoding="utf-8")

    plan = recon.cli("plan", str(recon.moves / "globex-revert.yaml"))
    assert plan.code == 0, plan
    assert "globex: northwind → contoso" in plan.out
    ran = recon.cli("apply", "--auto-approve", str(recon.moves))
    assert ran.code == 0, ran
    assert "1 applied" in ran.out
    assert effective(recon) == before
    after = recon.customer("globex")
    assert (after["parent"], after["services"]) == (before_customer["parent"], before_customer["services"])


def test_revert_refuses_a_move_that_is_not_applied(recon: Recon) -> None:
    ran = recon.cli("revert", "nothing-like-it")
    assert (ran.code, ran.out) == (1, "")
    assert ran.err == ("error: no recorded move named 'nothing-like-it'\n"
                       "  hint: `reconcile status` lists every recorded move\n")


def test_revert_refuses_a_customer_moved_again_since(recon: Recon) -> None:
    recon.manifest("globex-to-northwind", "globex", "northwind", services=EXCHANGE_UP)
    assert recon.cli("apply", "--auto-approve", str(recon.moves)).code == 0
    (recon.moves / "globex-to-northwind.yaml").rename(recon.root / "first.yaml")
    recon.manifest("globex-to-contoso", "globex", "contoso",
                   services={"hosted-exchange": {"plan": "exchange-basic", "sals": {"nw-standard": "standard"}}})
    ran = recon.cli("apply", "--auto-approve", str(recon.moves))
    assert ran.code == 0, ran
    ran = recon.cli("revert", "globex-to-northwind")
    assert (ran.code, ran.out) == (1, "")
    assert ran.err == ("error: 'globex' was moved again since 'globex-to-northwind', by 'globex-to-contoso': "
                       "revert that move first, or write a new move\n")


def test_revert_refuses_when_the_platform_moved_the_customer_away(recon: Recon) -> None:
    recon.manifest("globex-to-northwind", "globex", "northwind", services=EXCHANGE_UP)
    assert recon.cli("apply", "--auto-approve", str(recon.moves)).code == 0
    recon.edit_platform(lambda doc: recon.customer("globex", doc).update(parent="contoso"))
    ran = recon.cli("revert", "globex-to-northwind")
    assert (ran.code, ran.out) == (1, "")
    assert ran.err.startswith("error: 'globex' is under contoso, not under 'northwind' where 'globex-to-northwind' "
                              "put it: there is nothing to revert\n")


def test_two_sals_mapped_to_one_go_back_to_the_one_most_held_and_say_so(recon: Recon) -> None:
    recon.manifest("globex-to-northwind", "globex", "northwind", services={
        "hosted-exchange": {"plan": "nw-exchange", "sals": {"standard": "nw-standard", "premium": "nw-standard"}}})
    assert recon.cli("apply", "--auto-approve", str(recon.moves)).code == 0
    ran = recon.cli("revert", "globex-to-northwind")
    assert ran.code == 0, ran
    assert ran.err == ("warning: hosted-exchange: SAL nw-standard goes back to standard, which most of its users "
                       "held; the others held premium (1 user)\n")
    assert "        # nw-standard was also premium (1 user) before globex-to-northwind\n" in ran.out
    assert yaml.safe_load(ran.out)["spec"]["services"]["hosted-exchange"]["sals"] == {"nw-standard": "standard"}


def test_a_move_that_allowed_a_large_move_is_reverted_with_allow_large(recon: Recon) -> None:
    path = recon.manifest("globex-to-northwind", "globex", "northwind", services=EXCHANGE_UP)
    doc = yaml.safe_load(path.read_text("utf-8"))
    doc["spec"]["allowLarge"] = True
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert recon.cli("apply", "--auto-approve", str(recon.moves)).code == 0
    ran = recon.cli("revert", "globex-to-northwind")
    assert ran.code == 0, ran
    assert yaml.safe_load(ran.out)["spec"]["allowLarge"] is True
