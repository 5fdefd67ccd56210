"""Bad input is a diagnostic or a one-line error, exit 1: never "internal error ... this is a bug" (issue 9 item 8)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import MOVES, SEED, Recon, run_main

DEEP = 100_000


def seed_json_with(tmp_path: Path, value: str) -> Path:
    f = tmp_path / "seed.json"
    f.write_text('{"apiVersion": "reconciler/v1", "kind": "Platform", "locations": [{"id": "l", "name": '
                 + value + "}]}", encoding="utf-8")
    return f


def init(tmp_path: Path, seed: Path) -> tuple[int, str, str]:
    r = run_main("platform", "init", "--platform", f"sqlite:///{tmp_path / 'p.db'}", "--seed", str(seed))
    assert "internal error" not in r.err and "Traceback" not in r.err, r
    assert not (tmp_path / "p.db").exists()
    return r.code, r.out, r.err


def test_a_json_seed_nested_100k_deep(tmp_path: Path) -> None:
    f = seed_json_with(tmp_path, "[" * DEEP + "]" * DEEP)
    assert init(tmp_path, f) == (1, "", f"error: {f}: error[yaml]: not valid JSON: nested too deeply for a seed\n")


def test_a_json_seed_with_a_5000_digit_integer(tmp_path: Path) -> None:
    f = seed_json_with(tmp_path, "9" * 5000)
    assert init(tmp_path, f) == (1, "", f"error: {f}: error[yaml]: not valid JSON: an integer of 5000 digits is too "
                                        "long (at most 4300)\n")


def test_a_yaml_seed_with_a_5000_digit_integer(tmp_path: Path) -> None:
    f = tmp_path / "seed.yaml"
    f.write_text(SEED.read_text("utf-8").replace("mailboxQuotaMB: 2048", "mailboxQuotaMB: " + "9" * 5000, 1),
                 encoding="utf-8")
    assert init(tmp_path, f) == (1, "", f"error: {f}:29:40: error[yaml]: an integer of 5000 digits is too long "
                                        "(at most 4300)\n")


def test_a_manifest_with_a_5000_digit_integer(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text((MOVES / "acme-to-northwind.yaml").read_text("utf-8") + "      properties:\n"
                 "        mailboxQuotaMB: " + "9" * 5000 + "\n", encoding="utf-8")
    r = run_main("validate", str(f))
    assert r.code == 1, r
    assert f"{f}:" in r.err and ": error[yaml]: an integer of 5000 digits is too long (at most 4300)\n" in r.err, r
    assert "internal error" not in r.err


@pytest.mark.parametrize("nested", [
    "[" * DEEP + "]" * DEEP,
    '{"version": 1, "lineage": "x", "serial": 1, "moves": ' + "[" * DEEP + "]" * DEEP + "}",
], ids=["top", "inside-moves"])
def test_a_state_file_nested_100k_deep_names_the_backup(recon: Recon, nested: str) -> None:
    recon.copy_moves()
    recon.state.write_text(nested, encoding="utf-8")
    recon.backup.write_text("{}", encoding="utf-8")
    for args in (["plan", str(recon.moves)], ["apply", "--auto-approve", str(recon.moves)], ["status"]):
        r = recon.cli(*args)
        assert (r.code, r.err) == (1, (
            f"error: the state file {recon.state} is nested too deeply to be a state; nothing was changed\n"
            f"  hint: the previous state is kept at {recon.backup}; inspect it and restore it with "
            f"`cp {recon.backup} {recon.state}`\n")), r
    assert recon.state.read_text("utf-8") == nested


def test_a_state_in_a_place_that_cannot_hold_a_lock_file(recon: Recon, tmp_path: Path) -> None:
    recon.copy_moves()
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("", encoding="utf-8")
    state = blocker / "state.json"
    r = recon.cli("apply", "--auto-approve", "--state", str(state), str(recon.moves))
    assert (r.code, r.err) == (1, (
        f"error: cannot create the state lock {state}.lock: File exists; nothing was changed\n"
        f"  hint: make {blocker} writable for this user, or pass --state to a writable place\n")), r
    assert recon.requests() == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_a_state_directory_that_is_not_writable_and_has_no_lock_file_yet(recon: Recon, tmp_path: Path) -> None:
    recon.copy_moves()
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        r = recon.cli("apply", "--auto-approve", "--state", str(ro / "state.json"), str(recon.moves))
    finally:
        ro.chmod(0o755)
    assert (r.code, r.err) == (1, (
        f"error: cannot create the state lock {ro}/state.json.lock: Permission denied; nothing was changed\n"
        f"  hint: make {ro} writable for this user, or pass --state to a writable place\n")), r
    assert recon.requests() == []
