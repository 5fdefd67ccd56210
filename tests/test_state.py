"""The state file: atomic writes with a backup, refusing what it cannot trust, a full disk, the lock."""

from __future__ import annotations

import errno
import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from reconciler.errors import LockHeld, StateError
from reconciler.state import ManifestRef, MoveRecord, RequestRecord, State
from reconciler.state import file as states

if TYPE_CHECKING:
    from conftest import Recon

DIGEST = "ab" * 32


def a_state(serial: int = 1, moves: int = 1) -> State:
    st = State(serial=serial)
    for i in range(moves):
        st.moves[f"move-{i}"] = MoveRecord(
            manifest=ManifestRef(file=f"moves/{i}.yaml", sha256=DIGEST), customer=f"c{i}", from_reseller="a",
            to_reseller="b", status="in-progress",
            requests=[RequestRecord(id=f"rq-{i:024x}", status="InProgress", sub_requests=3)])
    return st


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


# -- atomic write and backup --------------------------------------------------------------------
def test_write_is_atomic_and_keeps_the_previous_version_as_backup(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    backup = tmp_path / "sub" / "state.json.backup"
    first = a_state(serial=1)
    states.write(path, first)
    b1 = path.read_bytes()
    assert json.loads(b1) == first.model_dump(mode="json")
    assert states.load(path) == first
    assert not backup.exists()
    assert leftovers(path.parent) == []

    second = a_state(serial=2, moves=2)
    ino1 = path.stat().st_ino
    states.write(path, second)
    b2 = path.read_bytes()
    assert backup.read_bytes() == b1
    assert path.stat().st_ino != ino1  # replaced by a rename, never edited in place
    assert states.load(path) == second
    assert states.load(backup) == first

    states.write(path, a_state(serial=3, moves=3))
    assert backup.read_bytes() == b2
    assert leftovers(path.parent) == []


def test_the_same_state_gives_the_same_bytes(tmp_path: Path) -> None:
    st = a_state(serial=4, moves=3)
    states.write(tmp_path / "a.json", st)
    states.write(tmp_path / "b.json", State.model_validate_json((tmp_path / "a.json").read_bytes()))
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (tmp_path / "a.json").read_bytes().endswith(b"}\n")


def test_the_journal_writes_what_a_fresh_write_of_the_same_state_would(recon: Recon, tmp_path: Path) -> None:
    """apply writes the state again and again, re-serialising only what changed; the bytes must not go stale."""
    recon.copy_moves()
    assert recon.cli("apply", "--auto-approve", "moves").code == 1  # globex applied, acme failed
    assert recon.cli("apply", "--auto-approve", "moves").code == 1  # acme: attempt 2 failed
    st = states.load(recon.state)
    assert st is not None
    states.write(tmp_path / "fresh.json", st)
    assert (tmp_path / "fresh.json").read_bytes() == recon.state_bytes()
    assert [r.status for r in st.moves["acme-to-northwind"].requests] == ["Failed", "Failed"]


# -- refusing a state it cannot trust --------------------------------------------------------------
def applied_twice(recon: Recon) -> None:
    """Two applies, so that the state has a backup."""
    recon.manifest("globex-to-northwind", "globex", "northwind",
                   services={"hosted-exchange": {"plan": "nw-exchange", "sals": {"standard": "nw-standard"}}})
    ran = recon.cli("apply", "--auto-approve", str(recon.moves))
    assert ran.code == 0, ran
    recon.manifest("hooli-to-northwind", "hooli", "northwind",
                   services={"hosted-exchange": {"plan": "nw-exchange", "sals": {"standard": "nw-standard"}}})
    # a third manifest that this test's apply would submit, if it ran
    recon.manifest("umbrella-to-northwind", "umbrella", "northwind",
                   services={"hosted-exchange": {"plan": "nw-exchange", "sals": {"standard": "nw-standard"}}})
    assert recon.backup.exists()


def truncated(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def unknown_version(raw: bytes) -> bytes:
    doc = json.loads(raw)
    doc["version"] = 2
    return json.dumps(doc).encode()


def not_a_state(raw: bytes) -> bytes:
    doc = json.loads(raw)
    del doc["moves"]["globex-to-northwind"]["customer"]
    return json.dumps(doc).encode()


@pytest.mark.parametrize(("corrupt", "message"), [
    (truncated, "does not parse"),
    (lambda raw: b"\xff\xfe" + raw, "does not parse"),
    (lambda raw: b"[1, 2]", "is not a JSON object"),
    (unknown_version, "has version 2; this reconciler 0.1.0 reads version 1 only"),
    (not_a_state, "is not valid: moves.globex-to-northwind.customer"),
], ids=["truncated", "not-utf8", "not-an-object", "unknown-version", "invalid-record"])
def test_an_untrustworthy_state_is_refused_naming_the_backup_and_never_overwritten(
        recon: Recon, corrupt: Any, message: str) -> None:
    applied_twice(recon)
    bad = corrupt(recon.state_bytes())
    recon.state.write_bytes(bad)
    backup = recon.backup.read_bytes()
    requests = recon.requests()

    for args in (["apply", "--auto-approve", str(recon.moves)], ["plan", str(recon.moves)], ["status"]):
        ran = recon.cli(*args)
        assert ran.code == 1, ran
        assert f"error: the state file {recon.state} {message}" in ran.err, ran
        assert "nothing was changed" in ran.err
        hint = next(line for line in ran.err.splitlines() if line.startswith("  hint: "))
        assert hint.endswith(f"the previous state is kept at {recon.backup}; inspect it and restore it with "
                             f"`cp {recon.backup} {recon.state}`"), ran
        assert "Traceback" not in ran.err
        assert recon.state_bytes() == bad
        assert recon.backup.read_bytes() == backup
        assert recon.requests() == requests  # nothing submitted


def test_an_untrustworthy_state_without_a_backup_says_so(recon: Recon) -> None:
    recon.manifest("globex-to-northwind", "globex", "northwind",
                   services={"hosted-exchange": {"plan": "nw-exchange", "sals": {"standard": "nw-standard"}}})
    recon.state.write_bytes(b'{"version": 1, "lineage": "')
    ran = recon.cli("apply", "--auto-approve", str(recon.moves))
    assert ran.code == 1, ran
    assert f"error: the state file {recon.state} does not parse" in ran.err
    assert f"there is no backup ({recon.backup} does not exist); restore it from git" in ran.err
    assert recon.state_bytes() == b'{"version": 1, "lineage": "'
    assert not recon.backup.exists()
    assert recon.requests() == []


def test_restoring_the_backup_as_the_hint_says_recovers(recon: Recon) -> None:
    applied_twice(recon)
    recon.state.write_bytes(truncated(recon.state_bytes()))
    recon.state.write_bytes(recon.backup.read_bytes())  # `cp PATH.backup PATH`
    ran = recon.cli("apply", "--auto-approve", str(recon.moves))
    assert ran.code == 0, ran
    st = recon.state_json()
    assert {n: r["status"] for n, r in st["moves"].items()} == {
        "globex-to-northwind": "applied", "hooli-to-northwind": "applied", "umbrella-to-northwind": "applied"}
    assert len(recon.requests()) == 3


# -- a no-op apply ---------------------------------------------------------------------------------
def test_a_noop_apply_leaves_the_state_byte_for_byte_unchanged(recon: Recon) -> None:
    applied_twice(recon)
    ran = recon.cli("apply", "--auto-approve", str(recon.moves))
    assert ran.code == 0, ran
    before = (recon.state_bytes(), recon.state.stat().st_ino, recon.state.stat().st_mtime_ns,
              recon.backup.read_bytes())
    for _ in range(2):
        ran = recon.cli("apply", "--auto-approve", str(recon.moves))
        assert ran.code == 0, ran
        assert "Nothing to apply: the state file was left as it was." in ran.out
        assert (recon.state_bytes(), recon.state.stat().st_ino, recon.state.stat().st_mtime_ns,
                recon.backup.read_bytes()) == before
    assert len(recon.requests()) == 3


# -- a full disk -------------------------------------------------------------------------------------
class FullDisk:
    """Stands in for the `os` module inside reconciler.state: the `fail_from`-th call of `call` and later
    ones raise ENOSPC; everything else is the real os."""

    def __init__(self, call: str = "write", fail_from: int = 1) -> None:
        self.call, self.fail_from, self.calls = call, fail_from, 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name != self.call:
            return real

        def maybe_fail(*args: Any) -> Any:
            self.calls += 1
            if self.calls >= self.fail_from:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(*args)
        return maybe_fail


@pytest.mark.parametrize("call", ["write", "fsync"])
def test_a_full_disk_leaves_the_previous_state_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      call: str) -> None:
    path = tmp_path / "state.json"
    states.write(path, a_state(serial=1))
    states.write(path, a_state(serial=2))
    before, backup = path.read_bytes(), (tmp_path / "state.json.backup").read_bytes()
    monkeypatch.setattr(states, "os", FullDisk(call))
    with pytest.raises(StateError) as e:
        states.write(path, a_state(serial=3, moves=5))
    assert e.value.message == f"cannot write the state file {path}: the disk is full; the previous state is intact"
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert (tmp_path / "state.json.backup").read_bytes() == backup
    loaded = states.load(path)
    assert loaded is not None and (loaded.serial, list(loaded.moves)) == (2, ["move-0"])
    assert leftovers(tmp_path) == []


def test_apply_on_a_full_disk_exits_1_and_submits_nothing(recon: Recon, monkeypatch: pytest.MonkeyPatch) -> None:
    applied_twice(recon)
    before, backup, requests = recon.state_bytes(), recon.backup.read_bytes(), recon.requests()
    disk = FullDisk("write")
    monkeypatch.setattr(states, "os", disk)
    ran = recon.cli("apply", "--auto-approve", str(recon.moves))
    monkeypatch.undo()
    assert ran.code == 1, ran
    assert (f"error: cannot write the state file {recon.state}: the disk is full; the previous state is intact"
            in ran.err), ran
    assert "hint: free space or fix permissions, then run apply again: it resumes" in ran.err
    assert "Traceback" not in ran.err
    assert disk.calls == 1  # the journal entry failed, so the request was never submitted
    assert recon.state_bytes() == before
    assert recon.backup.read_bytes() == backup
    recon.state_json()
    assert recon.requests() == requests
    assert leftovers(recon.root) == []

    # With space again, apply resumes and finishes.
    ran = recon.cli("apply", "--auto-approve", str(recon.moves))
    assert ran.code == 0, ran
    assert [r["customer"] for r in recon.requests() if r["status"] == "Provisioned"] == ["globex", "hooli", "umbrella"]


def test_a_full_disk_after_the_request_was_submitted_resumes_without_a_duplicate(
        recon: Recon, monkeypatch: pytest.MonkeyPatch) -> None:
    applied_twice(recon)
    # The group's journal entries are written, its requests submitted, the outcome write fails.
    monkeypatch.setattr(states, "os", FullDisk("write", fail_from=2))
    ran = recon.cli("apply", "--auto-approve", str(recon.moves))
    monkeypatch.undo()
    assert ran.code == 1, ran
    assert "the disk is full; the previous state is intact" in ran.err
    st = recon.state_json()
    ids = {}
    for name, customer in (("hooli-to-northwind", "hooli"), ("umbrella-to-northwind", "umbrella")):
        journaled = st["moves"][name]
        assert journaled["status"] == "in-progress"
        ids[name] = journaled["requests"][0]["id"]
        assert [(r["id"], r["status"]) for r in recon.requests(customer)] == [(ids[name], "Provisioned")]

    ran = recon.cli("apply", "--auto-approve", str(recon.moves))
    assert ran.code == 0, ran
    st = recon.state_json()
    for name, customer in (("hooli-to-northwind", "hooli"), ("umbrella-to-northwind", "umbrella")):
        assert st["moves"][name]["status"] == "applied"
        assert [r["id"] for r in st["moves"][name]["requests"]] == [ids[name]]  # recorded, never resubmitted
        assert [(r["id"], r["status"]) for r in recon.requests(customer)] == [(ids[name], "Provisioned")]


# -- the lock ------------------------------------------------------------------------------------------
def _holder(lock: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(lock.read_text("utf-8"))
    return doc


def test_the_lock_file_names_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    lock = tmp_path / "state.json.lock"
    with states.lock(path, "apply"):
        h = _holder(lock)
        assert set(h) == {"user", "host", "pid", "operation", "started_at"}
        assert (h["user"], h["host"], h["pid"], h["operation"]) == (
            getpass.getuser(), socket.gethostname(), os.getpid(), "apply")
        started = datetime.strptime(h["started_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        assert abs(datetime.now(timezone.utc) - started) < timedelta(minutes=1)
        # A contender is told who holds it (flock: another open file description conflicts, even in-process).
        with pytest.raises(LockHeld) as e, states.lock(path, "status"):
            pass
        assert e.value.message == (f"the state lock {lock} is held by {h['user']}@{h['host']}, pid {os.getpid()}, "
                                   f"running `apply`, since {h['started_at']}")
        assert e.value.hint is not None and "--lock-timeout" in e.value.hint
        assert _holder(lock) == h  # the contender did not touch it
    assert lock.read_text("utf-8") == ""  # released: it names nobody
    with states.lock(path, "status"):
        assert _holder(lock)["operation"] == "status"


def test_the_lock_names_the_ci_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.example")
    monkeypatch.setenv("GITHUB_REPOSITORY", "hosting/moves")
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    path = tmp_path / "state.json"
    with states.lock(path, "apply"):
        h = _holder(tmp_path / "state.json.lock")
        assert h["ci_run"] == "https://github.example/hosting/moves/actions/runs/4242"
        with pytest.raises(LockHeld) as e, states.lock(path, "apply"):
            pass
        assert e.value.message.endswith(", CI run https://github.example/hosting/moves/actions/runs/4242")
    monkeypatch.delenv("GITHUB_RUN_ID")
    with states.lock(path, "apply"):
        assert "ci_run" not in _holder(tmp_path / "state.json.lock")


def test_the_lock_timeout_waits_then_reports(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with states.lock(path, "apply"):
        t0 = time.monotonic()
        with pytest.raises(LockHeld) as e, states.lock(path, "apply", timeout=0.5):
            pass
        assert time.monotonic() - t0 >= 0.5
        assert e.value.message.endswith(" after waiting 0.5 s")


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from reconciler.state import file
    with file.lock(Path(sys.argv[1]), "apply"):
        print("locked", flush=True)
        time.sleep(120)
""")


def test_the_lock_dies_with_its_process(recon: Recon) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(recon.state)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        # Held: the CLI is refused and told who holds it.
        ran = recon.sub("status")
        assert ran.code == 1, ran
        assert (f"error: the state lock {recon.lock} is held by {getpass.getuser()}@{socket.gethostname()}, "
                f"pid {holder.pid}, running `apply`, since ") in ran.err, ran
        os.kill(holder.pid, signal.SIGKILL)
        assert holder.wait(timeout=10) == -signal.SIGKILL
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert _holder(recon.lock)["pid"] == holder.pid  # killed: it never cleaned up, yet the lock is free
    with states.lock(recon.state, "apply"):
        assert _holder(recon.lock)["pid"] == os.getpid()
    ran = recon.sub("status")
    assert ran.code == 0, ran
    assert "No recorded moves" in ran.out


HANG_IN_FSYNC = textwrap.dedent("""
    import os, sys, time
    from reconciler import cli
    from reconciler.state import file as state

    class HangInFsync:
        def __getattr__(self, name):
            return getattr(os, name)

        def fsync(self, fd):
            print("\\nIN-FSYNC", flush=True)
            time.sleep(120)

    state.os = HangInFsync()
    cli.main(sys.argv[1:])
""")


def test_a_write_killed_midway_leaves_no_temp_file_once_apply_ran_again(recon: Recon) -> None:
    recon.manifest("globex-to-northwind", "globex", "northwind",
                   services={"hosted-exchange": {"plan": "nw-exchange", "sals": {"standard": "nw-standard"}}})
    proc = subprocess.Popen([sys.executable, "-c", HANG_IN_FSYNC, "apply", "--auto-approve", "moves",
                             *recon.where()], cwd=recon.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "IN-FSYNC":
                break
        else:
            pytest.fail(f"the state was never fsynced: {proc.stderr.read() if proc.stderr else ''}")
        proc.kill()
    finally:
        proc.communicate(timeout=30)
    assert leftovers(recon.root) != []  # the crash left its temp file, as any crash mid-write does
    ran = recon.cli("apply", "--auto-approve", "moves")
    assert ran.code == 0, ran
    assert recon.state_json()["moves"]["globex-to-northwind"]["status"] == "applied"
    assert leftovers(recon.root) == []


# -- issue 9, items 5 and 11 --------------------------------------------------------------------------
def test_a_run_whose_lock_file_was_deleted_stops_before_its_next_write(tmp_path: Path) -> None:
    """`apply A & rm state.json.lock; apply B`: B can lock a new file, so A must never write again (no record of
    B's is lost to A's stale copy); A stops with an error, B goes on."""
    path = tmp_path / "state.json"
    a, b = states.FileStore(path), states.FileStore(path)
    with a.lock("apply"):
        a.write(a_state(serial=1))
        states.lock_of(path).unlink()  # deleted by hand while A holds it
        with b.lock("apply"):
            b.write(a_state(serial=2, moves=2))
            with pytest.raises(StateError) as e:
                a.write(a_state(serial=2, moves=1))
            assert e.value.message == (f"the state lock {states.lock_of(path)} was deleted or replaced while this "
                                       "run held it: another run may be writing this state now, so this run stops "
                                       "without writing")
    got = states.load(path)
    assert got is not None and (got.serial, len(got.moves)) == (2, 2)  # B's, untouched by A


def test_a_deleted_lock_file_is_recreated_and_locked_once_its_holder_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with states.lock(path, "apply"):
        states.lock_of(path).unlink()
    with states.lock(path, "apply"):
        assert states.lock_of(path).exists()


def test_a_symlinked_state_is_written_through_to_its_target(recon: Recon, tmp_path: Path) -> None:
    target_dir = tmp_path / "elsewhere"
    target_dir.mkdir()
    target = target_dir / "state.json"
    link = recon.root / "linked.json"
    link.symlink_to(target)
    recon.manifest("globex-to-northwind", "globex", "northwind",
                   services={"hosted-exchange": {"plan": "nw-exchange", "sals": {"standard": "nw-standard"}}})
    ran = recon.cli("apply", "--auto-approve", "--state", str(link), str(recon.moves))
    assert ran.code == 0, ran
    assert link.is_symlink() and link.resolve() == target  # still the link: the target was updated
    assert json.loads(target.read_text("utf-8"))["moves"]["globex-to-northwind"]["status"] == "applied"
    assert (target_dir / "state.json.lock").exists() and not (recon.root / "linked.json.lock").exists()
    recon.manifest("hooli-to-northwind", "hooli", "northwind",
                   services={"hosted-exchange": {"plan": "nw-exchange", "sals": {"standard": "nw-standard"}}})
    assert recon.cli("apply", "--auto-approve", "--state", str(link), str(recon.moves)).code == 0
    assert (target_dir / "state.json.backup").exists() and not (recon.root / "linked.json.backup").exists()
