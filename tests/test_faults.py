"""Faults (SECURITY.md, issue 6 part 3): a corrupt, truncated or newer state; a locked, foreign or corrupt platform
database; an interrupted `platform init`; SIGINT and SIGTERM during apply; a full disk under the state file and
under the platform database. Each answers with an exact exit code and message, leaves the state consistent with
the platform, and a re-run finishes the work.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    APPLY_SEED,
    RECONCILE_BIN,
    SEED,
    Recon,
    generated_seed,
    init_platform,
    run_main,
    subprocess_env,
)

from reconciler import __version__
from reconciler.platforms import sqlite as engine
from reconciler.state import file as states

EXCHANGE = {"hosted-exchange": {"plan": "nw-exchange", "sals": {"standard": "nw-standard"}}}


def env_of(r: Recon) -> dict[str, str | None]:
    return {"RECONCILE_PLATFORM": r.url, "RECONCILE_STATE": str(r.state), "NO_COLOR": "1", "COLUMNS": "200"}


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith((".tmp", ".init")) or ".init-" in p.name)


def consistent(r: Recon) -> dict[str, str]:
    """The state parses and agrees with the platform; returns name -> status of the recorded moves."""
    on_platform = {q["id"]: q for q in r.requests()}
    if not r.state.exists():
        assert on_platform == {}
        return {}
    st = r.state_json()
    recorded = set()
    for name, rec in st["moves"].items():
        for q in rec["requests"]:
            recorded.add(q["id"])
            if rec["status"] == "applied" and q is rec["requests"][-1]:
                assert on_platform[q["id"]]["status"] == "Provisioned", (name, rec)
    assert set(on_platform) <= recorded, f"the platform ran requests the state does not know: {on_platform}"
    return {n: rec["status"] for n, rec in st["moves"].items()}


@pytest.fixture
def applied(recon: Recon) -> Recon:
    """Two applies: a state with a record and a backup."""
    recon.manifest("globex-to-northwind", "globex", "northwind", services=EXCHANGE)
    assert recon.cli("apply", "--auto-approve", str(recon.moves)).code == 0
    recon.manifest("hooli-to-northwind", "hooli", "northwind", services=EXCHANGE)
    assert recon.cli("apply", "--auto-approve", str(recon.moves)).code == 0
    recon.manifest("umbrella-to-northwind", "umbrella", "northwind", services=EXCHANGE)  # still to do
    assert recon.backup.exists()
    return recon


# -- a corrupt, truncated or newer state -----------------------------------------------------------------------
def json_error(raw: bytes) -> str:
    try:
        json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return str(e)
    raise AssertionError("parses")


CORRUPT = {
    "truncated": lambda raw: raw[: len(raw) // 2],
    "truncated-to-nothing": lambda raw: b"",
    "binary-garbage": lambda raw: bytes(range(256)),
    "nul-filled": lambda raw: b"\x00" * len(raw),  # what a crash on some file systems leaves
}


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_a_corrupt_state_is_refused_naming_the_backup_and_nothing_is_overwritten(applied: Recon, kind: str) -> None:
    bad = CORRUPT[kind](applied.state_bytes())
    applied.state.write_bytes(bad)
    backup, requests, platform = applied.backup.read_bytes(), applied.requests(), applied.export()
    detail = json_error(bad)
    want = (f"error: the state file {applied.state} does not parse ({detail}); nothing was changed\n"
            f"  hint: the previous state is kept at {applied.backup}; inspect it and restore it with "
            f"`cp {applied.backup} {applied.state}`\n")
    for args in (("apply", "--auto-approve", str(applied.moves)), ("plan", str(applied.moves)), ("status",),
                 ("history",), ("apply", "--auto-approve", "--lock-timeout", "1", str(applied.moves))):
        ran = run_main(*args, env=env_of(applied))
        assert (ran.code, ran.err) == (1, want), (args, ran)
        assert applied.state_bytes() == bad
        assert applied.backup.read_bytes() == backup
    assert applied.requests() == requests and applied.export() == platform
    assert leftovers(applied.root) == []


def test_a_truncated_state_through_the_console_script(applied: Recon) -> None:
    bad = applied.state_bytes()[:100]
    applied.state.write_bytes(bad)
    ran = applied.sub("apply", "--auto-approve", "moves")
    assert (ran.code, ran.out) == (1, ""), ran
    assert ran.err == (f"error: the state file {applied.state} does not parse ({json_error(bad)}); nothing was "
                       f"changed\n  hint: the previous state is kept at {applied.backup}; inspect it and restore it "
                       f"with `cp {applied.backup} {applied.state}`\n")
    assert applied.state_bytes() == bad


def test_a_state_that_is_a_directory(recon: Recon) -> None:
    recon.state.mkdir()
    ran = run_main("plan", str(recon.root), env=env_of(recon))
    assert (ran.code, ran.err) == (1, f"error: cannot read the state file {recon.state}: Is a directory\n"), ran


@pytest.mark.parametrize(("version", "shown"), [(2, "2"), (99, "99"), ("1", "'1'"), (None, "None")])
def test_a_state_of_another_version_is_refused(applied: Recon, version: Any, shown: str) -> None:
    doc = json.loads(applied.state_bytes())
    if version is None:
        del doc["version"]
    else:
        doc["version"] = version
    doc["moves"]["from-the-future"] = {"shape": "unknown to this version"}
    raw = json.dumps(doc).encode()
    applied.state.write_bytes(raw)
    requests = applied.requests()
    for args in (("apply", "--auto-approve", str(applied.moves)), ("plan", str(applied.moves)), ("status",)):
        ran = run_main(*args, env=env_of(applied))
        assert (ran.code, ran.err) == (1, (
            f"error: the state file {applied.state} has version {shown}; this reconciler {__version__} reads version "
            f"1 only; nothing was changed\n  hint: upgrade reconciler if a newer one wrote it; the previous state is "
            f"kept at {applied.backup}; inspect it and restore it with `cp {applied.backup} {applied.state}`\n")), ran
    assert applied.state_bytes() == raw and applied.requests() == requests


# -- the platform database, locked by another process -------------------------------------------------------------
@pytest.fixture
def locked_db(recon: Recon) -> Iterator[sqlite3.Connection]:
    """Another process's write transaction on the platform database (WAL: readers go on, writers wait)."""
    holder = sqlite3.connect(recon.db, isolation_level=None)
    assert holder.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    holder.execute("BEGIN EXCLUSIVE")
    yield holder
    holder.execute("ROLLBACK")
    holder.close()


BUSY = ("error: the platform database is busy: database is locked\n"
        "  hint: another process holds it; try again, or raise RECONCILE_DB_TIMEOUT\n")


def test_the_default_database_timeout_is_ten_seconds() -> None:
    p = subprocess.run([sys.executable, "-c", "from reconciler.platforms import sqlite; print(sqlite.LOCK_TIMEOUT)"],
                       env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert p.stdout == "10.0\n", p


def test_a_locked_platform_database_waits_then_apply_fails_clearly(recon: Recon, locked_db: sqlite3.Connection,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "LOCK_TIMEOUT", 0.5)
    recon.manifest("globex-to-northwind", "globex", "northwind", services=EXCHANGE)
    ran = run_main("plan", str(recon.moves), env=env_of(recon))
    assert ran.code == 0, ran  # readers are not blocked
    t = time.monotonic()
    ran = run_main("apply", "--auto-approve", str(recon.moves), env=env_of(recon))
    waited = time.monotonic() - t
    assert (ran.code, ran.err) == (1, BUSY), ran
    assert 0.5 <= waited < 5, waited
    assert "Traceback" not in ran.out
    assert consistent(recon).get("globex-to-northwind") in (None, "in-progress")
    locked_db.execute("ROLLBACK")
    locked_db.execute("BEGIN")  # the fixture's ROLLBACK needs a transaction
    ran = run_main("apply", "--auto-approve", str(recon.moves), env=env_of(recon))
    assert ran.code == 0, ran
    assert consistent(recon) == {"globex-to-northwind": "applied"}
    assert [q["status"] for q in recon.requests("globex")] == ["Provisioned"]


def test_a_locked_platform_database_through_the_console_script_honours_the_timeout(
        recon: Recon, locked_db: sqlite3.Connection) -> None:
    recon.manifest("globex-to-northwind", "globex", "northwind", services=EXCHANGE)
    t = time.monotonic()
    ran = recon.sub("apply", "--auto-approve", "moves", RECONCILE_DB_TIMEOUT="1.5")
    waited = time.monotonic() - t
    assert (ran.code, ran.err) == (1, BUSY), ran
    assert 1.5 <= waited < 8, waited
    assert recon.requests() == []


# -- a database file that is not a reconciler platform ------------------------------------------------------------
def foreign_db(path: Path) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    db.close()


def newer_platform(path: Path) -> None:
    init_platform(path.parent, SEED, path.name)
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE meta SET value = 'reconciler-platform/3' WHERE key = 'format'")
    db.close()


NOT_A_PLATFORM = {
    "text-file": (lambda p: p.write_text("hello\n" * 200), "file is not a database"),
    "empty-file": (lambda p: p.write_bytes(b""), "no such table: meta"),
    "another-applications-database": (foreign_db, "no such table: meta"),
    "a-directory": (lambda p: p.mkdir(), "unable to open database file"),
    "truncated-platform": (lambda p: (init_platform(p.parent, SEED, p.name), p.write_bytes(p.read_bytes()[:8192])),
                           "database disk image is malformed"),
}


@pytest.mark.parametrize("kind", list(NOT_A_PLATFORM) + ["newer-format"])
def test_a_database_that_is_not_a_reconciler_platform(tmp_path: Path, kind: str) -> None:
    db = tmp_path / "platform.db"
    if kind == "newer-format":
        newer_platform(db)
        detail = "format 'reconciler-platform/3'"
    else:
        make, detail = NOT_A_PLATFORM[kind]
        make(db)
    moves = tmp_path / "moves"
    moves.mkdir()
    (moves / "m.yaml").write_text((SEED.parent / "moves" / "acme-to-northwind.yaml").read_text("utf-8"))
    env: dict[str, str | None] = {"RECONCILE_PLATFORM": f"sqlite:///{db}", "RECONCILE_STATE": str(tmp_path / "s.json")}
    want = (f"error: {db} is not a reconciler platform database ({detail})\n"
            "  hint: point --platform at a database made by `reconcile platform init`\n")
    for args in (("plan", str(moves)), ("apply", "--auto-approve", str(moves)), ("new-move", "acme", "northwind"),
                 ("platform", "export")):
        ran = run_main(*args, env=env)
        assert (ran.code, ran.out, ran.err) == (1, "", want), (args, ran)
    assert not (tmp_path / "s.json").exists()


def corrupt_table_page(db: Path, table: str) -> None:
    con = sqlite3.connect(db)
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    con.close()
    with open(db, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(bytes(range(256)) * (page_size // 256))


@pytest.mark.parametrize("table", ["customers", "users", "requests"])
def test_a_platform_database_with_a_corrupt_page_is_a_platform_error(recon: Recon, table: str) -> None:
    """Past the open-time check: the damage shows while a query's rows are read (found by this suite: it was an
    'internal error')."""
    recon.manifest("globex-to-northwind", "globex", "northwind", services=EXCHANGE)
    corrupt_table_page(recon.db, table)
    want = (f"error: {recon.db} is a damaged platform database (database disk image is malformed)\n"
            "  hint: restore it from a backup, or re-create it with `reconcile platform init --force`\n")
    commands = [("apply", "--auto-approve", str(recon.moves)), ("platform", "export")]
    if table != "requests":  # planning reads no request of a customer without any
        commands += [("plan", str(recon.moves)), ("new-move", "globex", "northwind")]
    for args in commands:
        ran = run_main(*args, env=env_of(recon))
        assert (ran.code, ran.err) == (1, want), (args, ran)
    # A submit that raised may have reached a platform (a lost response): its move stays journaled in-progress,
    # so the next apply asks for that request id before submitting anything.
    moves = json.loads(recon.state_bytes())["moves"] if recon.state.exists() else {}
    assert {n: r["status"] for n, r in moves.items()} in ({}, {"globex-to-northwind": "in-progress"})


# -- an interrupted `platform init` ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JSON seed that takes the embedded platform a second or so to build."""
    return generated_seed(tmp_path_factory.mktemp("big-seed") / "seed.json", {f"c{i:02d}": 1000 for i in range(60)})


def kill_init_midway(url: str, seed: Path, force: bool) -> subprocess.Popen[bytes]:
    target = Path(url[len("sqlite:///"):])
    args = [str(RECONCILE_BIN), "platform", "init", "--seed", str(seed), "--platform", url]
    args += ["--force"] if force else []
    proc = subprocess.Popen(args, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        temps = list(target.parent.glob(f".{target.name}.*.init"))
        if temps and temps[0].stat().st_size > 256 * 1024:  # well into writing the customers and users
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "init finished before it could be killed: make the seed larger"
    return proc


def test_a_killed_init_leaves_no_platform_and_the_next_init_cleans_up(tmp_path: Path, big_seed: Path) -> None:
    target = tmp_path / "p" / "platform.db"
    url = f"sqlite:///{target}"
    kill_init_midway(url, big_seed, force=False)
    assert not target.exists()
    assert len(leftovers(target.parent)) == 1  # the half-built temp file, never at the target's name
    ran = run_main("plan", str(tmp_path), env={"RECONCILE_PLATFORM": url, "RECONCILE_STATE": str(tmp_path / "s")})
    assert (ran.code, ran.err) == (1, f"error: no platform database at {target}\n"
                                      "  hint: create it with `reconcile platform init --seed FILE`\n"), ran
    ran = run_main("platform", "init", "--seed", str(SEED), "--platform", url)
    assert (ran.code, ran.out) == (0, f"Created {url}: 2 locations, 2 services, 8 customers, 7 users, 0 requests\n")
    assert leftovers(target.parent) == [] and sorted(p.name for p in target.parent.iterdir()) == ["platform.db"]


def test_a_killed_init_force_leaves_the_existing_platform_intact(tmp_path: Path, big_seed: Path) -> None:
    r = Recon(tmp_path / "ws")
    r.manifest("globex-to-northwind", "globex", "northwind", services=EXCHANGE)
    assert r.cli("apply", "--auto-approve", str(r.moves)).code == 0
    before = r.export()
    kill_init_midway(r.url, big_seed, force=True)
    assert r.export() == before
    assert len(leftovers(r.root)) == 1
    ran = r.cli("plan", str(r.moves))
    assert ran.code == 0 and "no-op: already applied" in ran.out, ran
    ran = run_main("platform", "init", "--force", "--seed", str(APPLY_SEED), "--platform", r.url)
    assert ran.code == 0, ran
    assert leftovers(r.root) == []


# -- SIGINT and SIGTERM during apply ----------------------------------------------------------------------------------
@pytest.fixture
def slow_batch(tmp_path: Path) -> Recon:
    """Three moves; the first (30,000 users) takes the engine a noticeable time."""
    seed = generated_seed(tmp_path / "seed.json", {"big": 100_000, "s1": 1, "s2": 1})
    doc = json.loads(seed.read_text("utf-8"))
    doc["customers"][1]["reseller"]["services"]["mail"]["sals"]["t"] = {"quota": 3}  # every user's SAL changes
    seed.write_text(json.dumps(doc), encoding="utf-8")
    r = Recon(tmp_path / "ws", seed)
    for i, cid in enumerate(["big", "s1", "s2"]):
        r.manifest(f"{cid}-to-dst", cid, "dst", "eu", file=f"{i}-{cid}.yaml",
                   services={"mail": {"plan": "p", "sals": {"s": "t"}}})
    return r


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_a_move_is_provisioned_lets_it_finish_then_stops(slow_batch: Recon, signum: int,
                                                                         code: int) -> None:
    r = slow_batch
    proc = r.popen("apply", "--auto-approve", "--parallelism", "1", "moves")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if b'"InProgress"' in r.state.read_bytes():  # journaled: its request is about to be provisioned
                time.sleep(0.03)  # into the engine's transaction, which takes 30,000 users well over 0.1 s
                proc.send_signal(signum)
                break
        except FileNotFoundError:
            pass
        time.sleep(0.001)
    ran = proc.finish(timeout=60)
    assert ran.code == code, ran
    assert ran.err == (f"error: stopped by {signal.Signals(signum).name}; every finished move is recorded and the "
                       "state is consistent: run apply again to continue\n"), ran
    assert consistent(r) == {"big-to-dst": "applied"}  # finished and recorded; the next ones never started
    assert [q["customer"] for q in r.requests()] == ["big"]
    ran = r.sub("apply", "--auto-approve", "moves")
    assert ran.code == 0, ran
    assert "Apply complete: 2 applied, 0 adopted, 0 failed, 2 requests submitted." in ran.out
    assert consistent(r) == {"big-to-dst": "applied", "s1-to-dst": "applied", "s2-to-dst": "applied"}
    assert sorted(q["customer"] for q in r.requests()) == ["big", "s1", "s2"]


def wait_until_opened(pid: int, path: Path, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd")):
                return
        except OSError:
            pass
        time.sleep(0.005)
    raise AssertionError(f"pid {pid} never opened {path}")


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_outside_a_move_stops_the_run_at_once(recon: Recon, signum: int, code: int) -> None:
    recon.manifest("globex-to-northwind", "globex", "northwind", services=EXCHANGE)
    with states.lock(recon.state, "test"):  # apply waits for this lock: it is not provisioning anything
        proc = recon.popen("apply", "--auto-approve", "--lock-timeout", "60", "moves")
        wait_until_opened(proc.pid, recon.lock)
        time.sleep(0.2)  # into its wait loop
        t = time.monotonic()
        proc.send_signal(signum)
        ran = proc.finish(timeout=30)
        stopped_in = time.monotonic() - t
    assert ran.code == code, ran
    assert ran.err == (f"error: stopped by {signal.Signals(signum).name}; every finished move is recorded and the "
                       "state is consistent: run apply again to continue\n"), ran
    assert stopped_in < 2, stopped_in
    assert not recon.state.exists() and recon.requests() == []


# -- a full disk ---------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_real_enospc_in_the_state_write_leaves_the_previous_state_intact(applied: Recon) -> None:
    """The state's temp file is made a link to /dev/full, where every write fails with ENOSPC: a full disk for
    this one file, through the real console script."""
    before, backup, requests = applied.state_bytes(), applied.backup.read_bytes(), applied.requests()
    tmp = applied.root / ".state.json.tmp"
    tmp.symlink_to("/dev/full")
    ran = applied.sub("apply", "--auto-approve", "moves")
    assert (ran.code, ran.err) == (1, (
        f"error: cannot write the state file {applied.state}: the disk is full; the previous state is intact\n"
        "  hint: free space or fix permissions, then run apply again: it resumes\n")), ran
    assert os.strerror(errno.ENOSPC) == "No space left on device"
    assert applied.state_bytes() == before and applied.backup.read_bytes() == backup
    assert applied.requests() == requests  # the journal write failed: nothing was submitted
    assert not tmp.exists() and not tmp.is_symlink()
    ran = applied.sub("apply", "--auto-approve", "moves")
    assert ran.code == 0, ran
    assert consistent(applied) == {n: "applied" for n in ("globex-to-northwind", "hooli-to-northwind",
                                                          "umbrella-to-northwind")}


def test_a_full_platform_database_is_a_clear_platform_error(recon: Recon, monkeypatch: pytest.MonkeyPatch) -> None:
    """`PRAGMA max_page_count` pins the database at its size on reconciler's own connections (the pragma holds for
    one connection only); the request then needs pages for its large body and SQLite answers SQLITE_FULL."""
    secret = "Sens1tive-" + "z" * 20_000  # a big sensitive override: its request body needs new pages
    recon.manifest("globex-to-northwind", "globex", "northwind",
                   services={"hosted-exchange": {**EXCHANGE["hosted-exchange"],
                                                 "properties": {"journalPassword": secret}}})
    real = engine._connect

    def full(path: Path, create: bool = False) -> sqlite3.Connection:
        conn = real(path, create)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}").fetchone()
        return conn

    monkeypatch.setattr(engine, "_connect", full)
    before = recon.export()
    ran = run_main("apply", "--auto-approve", str(recon.moves), env=env_of(recon))
    assert (ran.code, ran.err) == (1, (
        f"error: the platform database {recon.db} failed: database or disk is full; nothing of the change was "
        "applied\n  hint: free disk space or fix permissions, then run again\n")), ran
    assert "Sens1tive" not in ran.out + ran.err
    assert recon.export() == before  # nothing of it
    assert consistent(recon).get("globex-to-northwind") in (None, "in-progress")
    assert "Sens1tive" not in recon.state_bytes().decode()

    monkeypatch.undo()  # space again
    ran = run_main("apply", "--auto-approve", str(recon.moves), env=env_of(recon))
    assert ran.code == 0, ran
    assert consistent(recon) == {"globex-to-northwind": "applied"}
    assert [q["status"] for q in recon.requests("globex")] == ["Provisioned"]
