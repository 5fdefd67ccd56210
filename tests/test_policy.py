"""Batch policies (contract section 12): one conformance-style test per policy code, through the CLI's one
error boundary, with exact exit codes and diagnostics; the apply window's arithmetic as pure values."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import Recon, manifest, manifest_yaml

from reconciler import app, policy
from reconciler.applier import Options
from reconciler.config import Settings
from reconciler.errors import ConfigError

UTC = timezone.utc
SPLIT = "split the batch (--target/--exclude, or fewer manifests per pull request)"


def toml(r: Recon, body: str) -> Path:
    """A reconcile.toml in the workspace (platform and state come from the environment)."""
    p = r.root / "reconcile.toml"
    p.write_text(body, encoding="utf-8")
    return p


def plan_json(r: Recon, *args: str) -> dict:  # type: ignore[type-arg]
    ran = r.cli("plan", "--format", "json", str(r.moves), *args)
    return json.loads(ran.out)  # type: ignore[no-any-return]


def submitted(r: Recon) -> int:
    return len(r.requests())


def _hhmm(t: datetime) -> str:
    return t.strftime("%H:%M")


def window_now(open_: bool) -> str:
    """A [policy.apply_window] (UTC, every day) that is open now, or that opens in about an hour."""
    now = datetime.now(UTC)
    start, end = (now - timedelta(hours=1), now + timedelta(hours=1)) if open_ else \
        (now + timedelta(hours=1), now + timedelta(hours=2))
    return f'[policy.apply_window]\nstart = "{_hhmm(start)}"\nend = "{_hhmm(end)}"\n'


# -- policy-max-moves -----------------------------------------------------------------------
def test_max_moves_is_a_top_level_error_and_apply_changes_nothing(recon: Recon) -> None:
    recon.copy_moves()  # 3 moves, 7 users change
    toml(recon, "[policy]\nmax_moves = 2\n")
    ran = recon.cli("plan", str(recon.moves))
    assert ran.code == 1, ran
    want = f"error[policy-max-moves]: the plan has 3 moves that change the platform, more than max_moves = 2; {SPLIT}"
    assert ran.err.splitlines() == [want]
    doc = plan_json(recon)
    assert doc["applyable"] is False
    assert [(d["code"], d["file"], d["message"]) for d in doc["diagnostics"]] == \
        [("policy-max-moves", None, want.split(": ", 1)[1])]
    assert doc["summary"]["moves"] == 3  # the moves stay moves: the batch as a whole is refused
    before = submitted(recon)
    ran = recon.cli("apply", "--auto-approve", str(recon.moves))
    assert ran.code == 1, ran
    assert "error: nothing was applied: the plan breaks the policy (see above)" in ran.err
    assert submitted(recon) == before
    toml(recon, "[policy]\nmax_moves = 3\n")
    assert recon.cli("plan", str(recon.moves)).code == 0


# -- policy-max-users -----------------------------------------------------------------------
def test_max_users_compares_users_changed(recon: Recon) -> None:
    recon.copy_moves()
    toml(recon, "[policy]\nmax_users = 6\n")
    ran = recon.cli("plan", str(recon.moves))
    assert ran.code == 1, ran
    assert ran.err.splitlines() == [f"error[policy-max-users]: the plan changes 7 users, more than max_users = 6; "
                                    f"{SPLIT}"]
    for fmt in ("markdown", "github"):
        out = recon.cli("plan", "--format", fmt, str(recon.moves))
        assert out.code == 1
        assert "policy-max-users" in out.out, fmt
    assert "::error title=reconcile policy-max-users::the plan changes 7 users" in \
        recon.cli("plan", "--format", "github", str(recon.moves)).out
    toml(recon, "[policy]\nmax_users = 7\n")
    assert recon.cli("plan", str(recon.moves)).code == 0


# -- policy-large-move ----------------------------------------------------------------------
def test_large_move_is_invalid_unless_the_manifest_allows_it(recon: Recon) -> None:
    recon.copy_moves()  # acme-to-northwind changes 4 users
    toml(recon, "[policy]\nmax_users_per_move = 3\n")
    ran = recon.cli("plan", str(recon.moves))
    assert ran.code == 1, ran
    f = recon.moves / "02-acme-to-northwind.yaml"
    line = next(i for i, t in enumerate(f.read_text().splitlines(), 1) if t.startswith("spec:"))
    assert ran.err.splitlines() == [
        f"{f}:{line}:1: error[policy-large-move]: 'acme-to-northwind' changes 4 users, more than max_users_per_move "
        "= 3; if that is intended, set spec.allowLarge: true in its manifest (reviewers see it in the plan)"]
    doc = plan_json(recon)
    acme = next(m for m in doc["moves"] if m["name"] == "acme-to-northwind")
    assert (acme["action"], acme["allow_large"], acme["users"], acme["requests"]) == ("invalid", False, [], [])
    assert doc["summary"]["invalid"] == 1

    f.write_text(f.read_text().replace("spec:\n", "spec:\n  allowLarge: true\n"), encoding="utf-8")
    ran = recon.cli("plan", str(recon.moves))
    assert ran.code == 0, ran
    assert "    allowLarge: true (exempt from the policy max_users_per_move)" in ran.out
    acme = next(m for m in plan_json(recon)["moves"] if m["name"] == "acme-to-northwind")
    assert (acme["action"], acme["allow_large"]) == ("move", True)
    assert "**allowLarge: true**" in recon.cli("plan", "--format", "markdown", str(recon.moves)).out


def test_allow_large_must_be_a_boolean(recon: Recon) -> None:
    doc = manifest("acme-to-northwind", "acme", "northwind")
    doc["spec"]["allowLarge"] = "yes"
    (recon.moves / "a.yaml").parent.mkdir(parents=True, exist_ok=True)
    (recon.moves / "a.yaml").write_text(manifest_yaml(doc), encoding="utf-8")
    ran = recon.cli("validate", str(recon.moves))
    assert ran.code == 1
    assert "error[schema]: $.spec.allowLarge: expected a boolean, got a string" in ran.err


# -- policy-frozen-reseller -----------------------------------------------------------------
def test_frozen_reseller_makes_the_move_invalid(recon: Recon) -> None:
    recon.copy_moves()
    toml(recon, '[policy]\nfrozen_resellers = ["northwind"]\n')
    f = recon.moves / "03-hooli-to-northwind.yaml"
    ran = recon.cli("plan", str(f))
    assert ran.code == 1, ran
    line = next(i for i, t in enumerate(f.read_text().splitlines(), 1) if "toReseller" in t)
    assert ran.err.splitlines() == [
        f"{f}:{line}:15: error[policy-frozen-reseller]: 'northwind' is frozen by the policy (frozen_resellers in "
        "reconcile.toml): it may not receive customers; 'hooli' stays where it is"]
    doc = plan_json(recon)
    assert [m["action"] for m in doc["moves"]] == ["invalid"] * 3
    (hooli,) = [m for m in doc["moves"] if m["name"] == "hooli-to-northwind"]
    assert [d["path"] for d in hooli["diagnostics"]] == ["$.spec.toReseller"]
    before = submitted(recon)
    assert recon.cli("apply", "--auto-approve", str(f)).code == 1
    assert submitted(recon) == before


# -- policy-outside-window ------------------------------------------------------------------
def test_outside_the_window_apply_refuses_before_the_lock(recon: Recon) -> None:
    recon.copy_moves()
    toml(recon, window_now(open_=False))
    assert recon.cli("plan", str(recon.moves)).code == 0  # plan is not limited
    before = submitted(recon)
    ran = recon.cli("apply", "--auto-approve", str(recon.moves))
    assert ran.code == 1, ran
    assert re.fullmatch(
        r"error: policy-outside-window: nothing was applied: apply runs only inside the apply window \(every day "
        r"\d\d:\d\d-\d\d:\d\d UTC\); it is \w{3} \d\d:\d\d there now: the next opening is "
        r"\d{4}-\d\d-\d\dT\d\d:\d\d\+00:00 \(\d{4}-\d\d-\d\dT\d\d:\d\dZ\)\n"
        r"  hint: run apply again inside the window \(reconcile.toml \[policy.apply_window\]\)\n", ran.err), ran.err
    assert submitted(recon) == before
    assert not recon.state.exists() and not recon.lock.exists()  # nothing touched, the lock never taken


def test_outside_the_window_apply_plan_refuses_too_with_the_plans_own_policy(recon: Recon) -> None:
    recon.copy_moves()
    cfg = toml(recon, window_now(open_=False))
    assert recon.cli("plan", str(recon.moves), "--out", "plan.json").code == 0
    saved = json.loads((recon.root / "plan.json").read_text())
    assert saved["policy"]["apply_window"]["days"] == list(policy.DAYS)
    cfg.unlink()  # the plan carries the policy it was checked against
    ran = recon.cli("apply", "--auto-approve", "--plan", "plan.json")
    assert ran.code == 1, ran
    assert ran.err.startswith("error: policy-outside-window: nothing was applied")
    assert not recon.state.exists()


def test_inside_the_window_apply_runs(recon: Recon) -> None:
    recon.copy_moves()
    (recon.moves / "02-acme-to-northwind.yaml").unlink()  # dave's mailbox is on hold: acme's move fails
    toml(recon, window_now(open_=True))
    ran = recon.cli("apply", "--auto-approve", str(recon.moves))
    assert ran.code == 0, ran
    assert "Apply complete: 2 applied" in ran.out


def test_when_the_window_closes_no_new_move_is_submitted(recon: Recon) -> None:
    """The applier's hook: Options.until (app.apply sets it to the window's end) stops new submits."""
    recon.copy_moves()
    settings = Settings(platform_url=recon.url, state=str(recon.state))
    before = submitted(recon)
    result = app.apply(settings, [str(recon.moves)], options=Options(until=time.monotonic() - 1))
    assert (result.applied, result.window_closed, result.ok) == ([], True, False)
    assert result.pending == ["globex-to-northwind", "acme-to-northwind", "hooli-to-northwind"]
    assert submitted(recon) == before


def test_a_saved_plan_is_also_checked_against_the_reconcile_toml_found(recon: Recon) -> None:
    recon.copy_moves()
    toml(recon, "[policy]\nmax_moves = 5\n")
    assert recon.cli("plan", str(recon.moves), "--out", "plan.json").code == 0
    assert json.loads((recon.root / "plan.json").read_text())["policy"] == {
        "max_moves": 5, "max_users": None, "max_users_per_move": None, "frozen_resellers": [], "apply_window": None}
    toml(recon, '[policy]\nfrozen_resellers = ["northwind"]\n')
    ran = recon.cli("apply", "--auto-approve", "--plan", "plan.json")
    assert ran.code == 1, ran
    assert ran.err.count("error[policy-frozen-reseller]") == 3
    assert "error: nothing was applied: the plan breaks the policy (see above)" in ran.err
    assert not recon.state.exists()


# -- configuration errors -------------------------------------------------------------------
@pytest.mark.parametrize("body, message", [
    ("[policy]\nmax_move = 1\n", "unknown key in [policy]: max_move"),
    ("[policy]\nmax_moves = -1\n", "[policy] max_moves must be a whole number >= 0, not -1"),
    ("[policy]\nmax_users = true\n", "[policy] max_users must be a whole number >= 0, not True"),
    ("[policy]\nmax_users_per_move = '5'\n", "[policy] max_users_per_move must be a whole number >= 0, not '5'"),
    ("[policy]\nfrozen_resellers = 'contoso'\n",
     "[policy] frozen_resellers must be a list of reseller ids, not 'contoso'"),
    ("policy = 3\n", "[policy] must be a table"),
    ('[policy.apply_window]\nstart = "22:00"\nend = "22:00"\n',
     "[policy.apply_window] start and end are both 22:00: the window would be empty (or the whole day)"),
    ('[policy.apply_window]\nstart = "22:00"\n', "[policy.apply_window] needs `end`"),
    ('[policy.apply_window]\nstart = "24:00"\nend = "06:00"\n',
     "[policy.apply_window] start must be a time \"HH:MM\" (00:00 to 23:59), not '24:00'"),
    ('[policy.apply_window]\nstart = "22:00"\nend = "06:00"\ntimezone = "Mars/Olympus"\n',
     "[policy.apply_window] timezone 'Mars/Olympus' is not an IANA time zone name"),
    ('[policy.apply_window]\nstart = "22:00"\nend = "06:00"\ndays = ["Saturday"]\n',
     "[policy.apply_window] days must be a non-empty list of Mon, Tue, Wed, Thu, Fri, Sat, Sun, not ['Saturday']"),
    ('[policy.apply_window]\nstart = "22:00"\nend = "06:00"\nzone = "UTC"\n',
     "unknown key in [policy.apply_window]: zone"),
])
def test_a_bad_policy_is_a_configuration_error(recon: Recon, body: str, message: str) -> None:
    recon.copy_moves()
    cfg = toml(recon, body)
    for args in (["plan", str(recon.moves)], ["apply", "--auto-approve", str(recon.moves)]):
        ran = recon.cli(*args)
        assert ran.code == 1, ran
        assert ran.err.splitlines()[0] == f"error: {cfg}: {message}", ran.err
        assert "Traceback" not in ran.err
    assert not recon.state.exists()


# -- the window's arithmetic ----------------------------------------------------------------
def at(s: str, tz: str = "Europe/Berlin") -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(s).replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)


WEEKEND_NIGHTS = policy.parse_window({"days": ["Sat", "Sun"], "start": "22:00", "end": "06:00",
                                      "timezone": "Europe/Berlin"}, "t")


@pytest.mark.parametrize("local, open_", [
    ("2024-06-08 21:59", False),  # Saturday, before the start
    ("2024-06-08 22:00", True),   # [start, ...
    ("2024-06-09 05:59", True),   # Sunday morning: Saturday's window
    ("2024-06-09 06:00", False),  # ... end)
    ("2024-06-09 23:00", True),   # Sunday's window
    ("2024-06-10 05:00", True),   # Monday morning: still Sunday's window
    ("2024-06-10 23:00", False),  # Monday's night: no window starts on Monday
    ("2024-06-07 23:00", False),  # Friday
])
def test_days_are_the_days_a_window_starts(local: str, open_: bool) -> None:
    assert (WEEKEND_NIGHTS.closes_at(at(local)) is not None) == open_


def test_next_opening_and_closing_in_local_time_across_dst() -> None:
    # Berlin leaves summer time on Sunday 27 Oct 2024: Saturday's window is 9 hours long in UTC.
    opens = WEEKEND_NIGHTS.next_opening(at("2024-10-23 12:00"))
    assert opens == at("2024-10-26 22:00") == datetime(2024, 10, 26, 20, 0, tzinfo=UTC)
    assert WEEKEND_NIGHTS.closes_at(opens) == datetime(2024, 10, 27, 5, 0, tzinfo=UTC)
    assert policy.outside_window([WEEKEND_NIGHTS], at("2024-10-23 12:00")) == (
        "apply runs only inside the apply window (Sat, Sun 22:00-06:00 Europe/Berlin); it is Wed 12:00 there now: "
        "the next opening is 2024-10-26T22:00+02:00 (2024-10-26T20:00Z)")
    assert policy.outside_window([WEEKEND_NIGHTS], at("2024-10-26 23:00")) is None
    assert policy.seconds_left([WEEKEND_NIGHTS], at("2024-10-27 05:30")) == 30 * 60


def test_the_policy_of_reconcile_toml_is_parsed_once_with_defaults(tmp_path: Path) -> None:
    from reconciler import config

    (tmp_path / "reconcile.toml").write_text('[policy]\nmax_moves = 1\n[policy.apply_window]\nstart = "08:00"\n'
                                             'end = "18:00"\n', encoding="utf-8")
    got = config.resolve(cwd=tmp_path).policy
    assert got is not None and got.apply_window is not None
    assert (got.max_moves, got.apply_window.timezone, got.apply_window.days) == (1, "UTC", tuple(range(7)))
    with pytest.raises(ConfigError):
        policy.parse({"apply_window": {"start": "08:00", "end": "08:00"}}, "x")


# -- examples/policy ------------------------------------------------------------------------
EXAMPLES = Path(__file__).parent.parent / "examples" / "policy"


@pytest.mark.parametrize("code", ["policy-max-moves", "policy-max-users", "policy-large-move",
                                  "policy-frozen-reseller", "policy-outside-window"])
def test_each_policy_example_raises_exactly_its_code(tmp_path: Path, code: str) -> None:
    """Run as the README says: from examples/policy, with its own reconcile.toml and platform (copied)."""
    import shutil
    import subprocess

    from conftest import RECONCILE_BIN, subprocess_env

    ws = tmp_path / "examples"
    shutil.copytree(EXAMPLES, ws / "policy", ignore=shutil.ignore_patterns(".reconcile"))
    shutil.copyfile(EXAMPLES.parent / "platform.yaml", ws / "platform.yaml")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(RECONCILE_BIN), *args], cwd=ws / "policy", capture_output=True, text=True,
                              env=subprocess_env(), timeout=120, stdin=subprocess.DEVNULL)

    p = run("plan", "--format", "json", f"{code}.yaml")
    doc = json.loads(p.stdout)
    codes = [d["code"] for d in doc["diagnostics"]] + [d["code"] for m in doc["moves"] for d in m["diagnostics"]]
    if code == "policy-outside-window":
        assert (p.returncode, codes) == (0, [])
        cfg = ws / "policy" / "reconcile.toml"  # the example's window is nearly always closed: make it surely so
        text = cfg.read_text().split("[policy.apply_window]")[0] + window_now(open_=False)
        cfg.write_text(text, encoding="utf-8")
        p = run("apply", "--auto-approve", f"{code}.yaml")
        assert p.returncode == 1 and p.stderr.startswith("error: policy-outside-window: "), p.stderr
        assert not (ws / "policy" / ".reconcile" / "state.json").exists()
    else:
        assert (p.returncode, codes) == (1, [code]), p.stderr
