"""`reconcile drift PATH...` (contract section 12): exit 0 when nothing drifted, 2 when something did."""

from __future__ import annotations

import json

from conftest import Recon

EXCHANGE = {"hosted-exchange": {"plan": "nw-exchange", "sals": {"standard": "nw-standard"},
                                "properties": {"mailboxQuotaMB": 8192}}}


def applied(recon: Recon) -> Recon:
    recon.manifest("globex-to-northwind", "globex", "northwind", services=EXCHANGE)
    assert recon.cli("apply", "--auto-approve", str(recon.moves)).code == 0
    return recon


def test_no_drift_exits_0(recon: Recon) -> None:
    applied(recon)
    ran = recon.cli("drift", str(recon.moves))
    assert (ran.code, ran.out, ran.err) == (0, "No drift: the applied move matches the platform.\n", "")
    ran = recon.cli("drift", "--format", "json", str(recon.moves))
    assert (ran.code, json.loads(ran.out)) == (0, {"drifted": []})


def test_a_customer_moved_away_and_a_changed_override_are_drift(recon: Recon) -> None:
    applied(recon)

    def change(doc: dict) -> None:  # type: ignore[type-arg]
        recon.customer("globex", doc)["services"]["hosted-exchange"]["overrides"]["mailboxQuotaMB"] = 1024
    recon.edit_platform(change)
    ran = recon.cli("drift", "--format", "json", str(recon.moves))
    assert ran.code == 2, ran
    assert json.loads(ran.out) == {"drifted": [{"move": "globex-to-northwind", "customer": "globex", "differences": [
        {"path": "services.hosted-exchange.properties.mailboxQuotaMB", "platform": 1024, "expected": 8192}]}]}

    recon.edit_platform(lambda doc: recon.customer("globex", doc).update(parent="contoso"))
    ran = recon.cli("drift", str(recon.moves))
    assert ran.code == 2, ran
    assert ran.out.startswith("Drift: 1 of 1 applied move has drifted from the platform;")
    assert "    parent: platform has contoso, the move set northwind\n" in ran.out
    md = recon.cli("drift", "--format", "markdown", str(recon.moves))
    assert md.code == 2 and "| globex-to-northwind | globex | parent: platform has contoso" in md.out
    gh = recon.cli("drift", "--format", "github", str(recon.moves))
    assert gh.code == 2
    assert "::warning file=" in gh.out and "title=reconcile drift::'globex' no longer matches" in gh.out


def test_a_user_sal_changed_within_the_destination_is_not_drift(recon: Recon) -> None:
    applied(recon)

    def sal(doc: dict) -> None:  # type: ignore[type-arg]
        for u in recon.customer("globex", doc)["users"]:
            u["services"]["hosted-exchange"]["sal"] = "premium"  # northwind offers it
    recon.edit_platform(sal)
    ran = recon.cli("drift", str(recon.moves))
    assert ran.code == 0, ran


def test_moves_not_applied_are_not_compared(recon: Recon) -> None:
    recon.manifest("globex-to-northwind", "globex", "northwind", services=EXCHANGE)
    ran = recon.cli("drift", str(recon.moves))
    assert (ran.code, ran.out) == (0, "Drift: no applied move among the manifests to compare.\n")


def test_no_manifest_is_an_error_not_a_green_night(recon: Recon) -> None:
    recon.moves.mkdir(exist_ok=True)
    ran = recon.cli("drift", str(recon.moves))
    assert (ran.code, ran.out) == (1, "")
    assert ran.err == (f"error: no move to compare: no manifest (*.yaml, *.yml) found in {recon.moves}\n"
                       "  hint: pass the folder of move manifests, e.g. `reconcile drift moves/`\n")
