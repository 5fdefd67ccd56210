"""`reconcile apply` as a real process: SIGKILLed at random moments over a batch of 110 moves, and two
applies at once. Every move is applied exactly once, the state always parses, the lock names its holder."""

from __future__ import annotations

import contextlib
import getpass
import json
import random
import signal
import socket
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from reconciler.state import file as states

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from conftest import Recon, Running

N_MOVES = 110
MIN_KILLS = 20
SEED = 20261128


def apply_args() -> list[str]:
    # One move at a time, so that kills land between and inside moves at every step of the journal; kills with
    # moves in flight in parallel are tests/test_apply_async.py's.
    return ["apply", "--auto-approve", "--parallelism", "1", "moves"]


def stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        s = path.stat()
    except FileNotFoundError:
        return None
    return (s.st_ino, s.st_mtime_ns, s.st_size)


def wait_for_writes(proc: Running, state: Path, writes: int, limit: float = 30.0) -> None:
    """Return once `state` was replaced `writes` times (or the process ended)."""
    seen, last = 0, stat_key(state)
    end = time.monotonic() + limit
    while seen < writes and proc.poll() is None and time.monotonic() < end:
        key = stat_key(state)
        if key != last:
            seen, last = seen + 1, key
        time.sleep(0.0005)


def check_consistent(ws: Recon, n: int) -> tuple[int, int]:
    """What must hold at any instant, even right after a SIGKILL. Returns (applied, in-progress) records."""
    doc = ws.export()
    requests = doc["requests"]
    by_customer = Counter(r["customer"] for r in requests)
    assert all(v == 1 for v in by_customer.values()), f"a customer has two requests: {by_customer.most_common(3)}"
    assert all(r["status"] == "Provisioned" for r in requests), requests
    customers = {c["id"]: c for c in doc["customers"]}
    for i in range(n):
        c = customers[f"cust-{i:03d}"]
        moved = c["id"] in by_customer
        # one transaction: a customer is either wholly moved or not at all
        assert c["parent"] == ("beta" if moved else "alpha"), c
        assert c["services"]["mail"]["plan"] == ("b-mail" if moved else "a-mail"), c
        sals = {u["services"]["mail"]["sal"] for u in c["users"]}
        assert sals == ({"pro", "b-std"} if moved else {"pro", "std"}), c
    if not ws.state.exists():
        return 0, 0
    st = ws.state_json()  # parses, matches the schema, loads
    on_platform = {r["id"]: r for r in requests}
    applied = in_progress = 0
    for name, rec in st["moves"].items():
        assert len(rec["requests"]) == 1, (name, rec)  # never a second attempt: nothing failed
        rq = rec["requests"][0]
        if rec["status"] == "applied":
            applied += 1
            assert on_platform[rq["id"]]["status"] == "Provisioned"
            assert rq["status"] == "Provisioned"
        else:
            assert rec["status"] == "in-progress", (name, rec)
            in_progress += 1
            assert rq["id"] not in on_platform or on_platform[rq["id"]]["customer"] == rec["customer"]
    return applied, in_progress


def test_sigkill_at_random_moments_applies_every_move_exactly_once(tmp_path: Path,
                                                                   big_batch: Callable[..., Recon]) -> None:
    # 40 users a customer: each move takes a few milliseconds, so kills can land between and inside moves.
    ws = big_batch(tmp_path / "big", customers=N_MOVES, users=40)
    rng = random.Random(SEED)
    started = time.monotonic()
    t = time.monotonic()
    ran = ws.sub("plan", "moves", "--format", "json")
    startup = time.monotonic() - t  # start, read 110 manifests, plan: about when apply starts journaling
    assert ran.code == 0, ran
    assert json.loads(ran.out)["summary"]["moves"] == N_MOVES

    kills = mid_batch = runs = applied = 0
    kinds: Counter[str] = Counter()
    while True:
        runs += 1
        assert runs <= 150 and time.monotonic() - started < 240, f"no convergence: {runs} runs, {kills} kills"
        proc = ws.popen(*apply_args())
        if kills < MIN_KILLS or applied < N_MOVES:  # kill until the batch is done, and at least MIN_KILLS times
            if rng.random() < 0.25:  # during start-up, reading and planning (the batch itself takes ~0.2 s)
                kind = "timed"
                time.sleep(rng.uniform(0.0, startup * 0.9))
            else:  # after k state writes (journal or outcome), plus a jitter into the next step
                kind = "after-writes"
                # Moves are journaled a group at a time (2 writes a group): 1-2 writes keeps most kills mid-batch.
                wait_for_writes(proc, ws.state, rng.randint(1, 2))
                time.sleep(rng.uniform(0.0, 0.004))
            if proc.poll() is None:
                proc.kill()
                proc.finish(timeout=30)
                kills += 1
                kinds[kind] += 1
                applied, in_progress = check_consistent(ws, N_MOVES)
                if 0 < applied < N_MOVES or in_progress:
                    mid_batch += 1
                continue
        done = proc.finish()
        assert done.code == 0, done
        assert "Traceback" not in done.err
        applied = check_consistent(ws, N_MOVES)[0]
        if kills >= MIN_KILLS and applied == N_MOVES:
            break
    elapsed = time.monotonic() - started
    print(f"\n{kills} kills ({dict(kinds)}), {mid_batch} mid-batch, {runs} runs, {elapsed:.1f} s")
    assert kills >= MIN_KILLS
    assert mid_batch >= MIN_KILLS // 2, f"only {mid_batch} of {kills} kills landed while moves were left"

    # Every move applied exactly once: one Provisioned request per move, the one the state records.
    ran = ws.sub("platform", "export", "--format", "json")
    assert ran.code == 0, ran
    requests = json.loads(ran.out)["requests"]
    assert len(requests) == N_MOVES
    assert sorted(r["customer"] for r in requests) == [f"cust-{i:03d}" for i in range(N_MOVES)]
    assert {r["status"] for r in requests} == {"Provisioned"}
    st = ws.state_json()
    assert len(st["moves"]) == N_MOVES
    assert {r["status"] for r in st["moves"].values()} == {"applied"}
    assert sorted(rec["requests"][0]["id"] for rec in st["moves"].values()) == sorted(r["id"] for r in requests)

    # The journal's bytes are what a fresh write of that state gives (no stale record text).
    loaded = states.load(ws.state)
    assert loaded is not None
    states.write(tmp_path / "fresh.json", loaded)
    assert (tmp_path / "fresh.json").read_bytes() == ws.state_bytes()

    # A following plan is all noop.
    ran = ws.sub("plan", "moves", "--format", "json", "--detailed-exitcode")
    assert ran.code == 0, ran
    plan = json.loads(ran.out)
    assert {(m["action"], m["reason"]) for m in plan["moves"]} == {("noop", "applied")}
    assert plan["summary"]["noop"] == N_MOVES and plan["summary"]["moves"] == 0


# -- two applies at once ----------------------------------------------------------------------------
def wait_for_holder(ws: Recon, proc: Running, limit: float = 30.0) -> dict[str, Any]:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        assert proc.poll() is None, "the first apply ended before it was seen holding the lock"
        try:
            holder: dict[str, Any] = json.loads(ws.lock.read_text("utf-8"))
            if holder.get("pid") == proc.pid:
                return holder
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.002)
    raise AssertionError("the first apply never took the lock")


def finish(proc: Running) -> tuple[int, str, str]:
    done = proc.finish()
    return done.code, done.out, done.err


@pytest.fixture
def batch(tmp_path: Path, big_batch: Callable[..., Recon]) -> Recon:
    return big_batch(tmp_path / "big", customers=N_MOVES)


@contextlib.contextmanager
def platform_write_lock(ws: Recon) -> Iterator[None]:
    """Hold the platform database's write lock: an apply that reaches its first submit waits there."""
    conn = sqlite3.connect(ws.db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_a_second_apply_is_refused_naming_the_lock_holder(batch: Recon) -> None:
    blocker = platform_write_lock(batch)
    blocker.__enter__()  # the first apply cannot finish before the second has asked for the lock
    first = batch.popen(*apply_args())
    try:
        holder = wait_for_holder(batch, first)
        assert (holder["user"], holder["host"], holder["operation"]) == (getpass.getuser(), socket.gethostname(),
                                                                        "apply")
        second = batch.sub(*apply_args())
        still_running = first.poll() is None
    finally:
        blocker.__exit__(None, None, None)
        code, out, err = finish(first)
    assert still_running, "the first apply finished before the second one asked for the lock"
    assert second.code == 1, second
    assert (f"error: the state lock {batch.lock} is held by {getpass.getuser()}@{socket.gethostname()}, "
            f"pid {first.pid}, running `apply`, since {holder['started_at']}") in second.err, second
    assert "hint: wait for that run to finish, or pass --lock-timeout SECONDS" in second.err
    assert code == 0, err
    assert "Apply complete: 110 applied" in out
    requests = batch.requests()
    assert len(requests) == N_MOVES and {r["status"] for r in requests} == {"Provisioned"}
    assert {r["status"] for r in batch.state_json()["moves"].values()} == {"applied"}


def test_with_a_lock_timeout_the_second_apply_waits_and_does_nothing(batch: Recon) -> None:
    first = batch.popen(*apply_args())
    try:
        wait_for_holder(batch, first)
        second = batch.popen(*apply_args(), "--lock-timeout", "120")
        code, out, err = finish(first)
        after_first = (batch.state_bytes(), stat_key(batch.state))
        requests = batch.requests()
    finally:
        if first.poll() is None:
            first.kill()
    code2, out2, err2 = finish(second)
    assert code == 0, err
    assert code2 == 0, err2
    assert "Apply complete: 110 applied" in out
    assert "Nothing to apply: the state file was left as it was." in out2, out2
    assert (batch.state_bytes(), stat_key(batch.state)) == after_first
    assert batch.requests() == requests
    assert len(requests) == N_MOVES and len({r["customer"] for r in requests}) == N_MOVES


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_batch_finishes_the_current_move_then_stops(batch: Recon, signum: int, code: int) -> None:
    proc = batch.popen(*apply_args())
    wait_for_writes(proc, batch.state, 7)  # mid-move: the 4th move is journaled, maybe submitted
    proc.send_signal(signum)
    got, out, err = finish(proc)
    assert got == code, (got, err)
    assert f"error: stopped by {signal.Signals(signum).name}" in err, err
    assert "run apply again to continue" in err
    assert "Traceback" not in err
    applied, in_progress = check_consistent(batch, N_MOVES)
    assert in_progress == 0 and 4 <= applied < N_MOVES  # the move in flight was finished and recorded
    ran = batch.sub(*apply_args())
    assert ran.code == 0, ran
    assert check_consistent(batch, N_MOVES) == (N_MOVES, 0)
    assert len(batch.requests()) == N_MOVES
