"""Apply against an asynchronous platform (contract section 10): it waits, `--wait-timeout`, `--no-wait`,
Ctrl-C/SIGTERM with moves in flight, and exactly once under client kills, a server restart and network
faults. The platform is the real `reconcile platform serve --provision-seconds S` on loopback."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from peers import Proxy, Served, http_available, make_batch


@pytest.fixture(autouse=True)
def _needs_http() -> None:
    why = http_available()
    if why:
        pytest.skip(why)


# -- waiting ---------------------------------------------------------------------------------------------
def test_apply_waits_until_the_platform_has_provisioned_every_move(tmp_path: Path) -> None:
    b = make_batch(tmp_path, 8)
    with Served(b.db_url, tmp_path / "server", "--provision-seconds", "0.3") as served:
        ran = b.run(served.url, "apply", "moves", "--auto-approve", "--parallelism", "4")
        assert ran.code == 0, ran
        assert "Apply complete: 8 applied, 0 adopted, 0 failed, 8 requests submitted." in ran.out
        assert sum(line.startswith("✓ move-c") for line in ran.out.splitlines()) == 8  # one line a move (no tty)
        assert set(b.statuses().values()) == {"applied"}
        b.assert_exactly_once(served.url)


def test_no_wait_submits_records_in_progress_and_status_finishes_them(tmp_path: Path) -> None:
    b = make_batch(tmp_path, 4)
    with Served(b.db_url, tmp_path / "server", "--provision-seconds", "1") as served:
        started = time.monotonic()
        ran = b.run(served.url, "apply", "moves", "--auto-approve", "--no-wait")
        assert ran.code == 0, ran
        assert time.monotonic() - started < 30
        assert "4 moves submitted, not waited for (--no-wait)" in ran.out
        assert set(b.statuses().values()) == {"in-progress"}
        deadline = time.monotonic() + 60
        while any(r["status"] != "Provisioned" for r in b.requests()):
            assert time.monotonic() < deadline, b.requests()
            time.sleep(0.2)
        st = b.run(served.url, "status", "--format", "json")
        assert st.code == 0, st
        assert {n: m["status"] for n, m in json.loads(st.out)["moves"].items()} == dict.fromkeys(b.names, "applied")
        b.assert_exactly_once(served.url)


def test_the_wait_timeout_leaves_moves_in_progress_and_the_next_apply_records_them_applied(tmp_path: Path) -> None:
    b = make_batch(tmp_path, 6)
    with Served(b.db_url, tmp_path / "server", "--provision-seconds", "2") as served:
        ran = b.run(served.url, "apply", "moves", "--auto-approve", "--parallelism", "2", "--wait-timeout", "0.5")
        assert ran.code == 1, ran
        assert "2 moves still in progress on the platform when apply stopped waiting: move-c000, move-c001" \
            in ran.out, ran.out
        assert "4 moves not attempted before apply stopped" in ran.out
        assert b.statuses() == {"move-c000": "in-progress", "move-c001": "in-progress"}
        ran = b.run(served.url, "apply", "moves", "--auto-approve", "--parallelism", "6")
        assert ran.code == 0, ran
        st = json.loads(b.state.read_text("utf-8"))["moves"]
        assert {n: r["status"] for n, r in st.items()} == dict.fromkeys(b.names, "applied")  # never "adopted"
        assert [len(st[n]["requests"]) for n in b.names] == [1] * 6  # the in-progress ones were not resubmitted
        b.assert_exactly_once(served.url)


# -- signals ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_submitting_records_what_is_in_flight_and_the_next_apply_resumes(
        tmp_path: Path, signum: int, code: int) -> None:
    b = make_batch(tmp_path, 12)
    with Served(b.db_url, tmp_path / "server", "--provision-seconds", "3") as served:
        running = b.popen(served.url, "apply", "moves", "--auto-approve", "--parallelism", "4")
        deadline = time.monotonic() + 60
        while len(b.requests()) < 4:  # four moves in flight
            assert running.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        sent = time.monotonic()
        running.proc.send_signal(signum)
        ran = running.finish(timeout=60)
        assert ran.code == code, ran
        assert time.monotonic() - sent < 2.5, "apply waited for the platform instead of stopping"
        assert ran.err.endswith(f"error: stopped by {signal.Signals(signum).name}; every finished move is recorded "
                                "and the state is consistent: run apply again to continue\n"), ran.err
        assert sorted(b.statuses().items()) == [(f"move-c00{i}", "in-progress") for i in range(4)]
        assert len(b.requests()) == 4  # nothing submitted after the signal
        again = b.run(served.url, "apply", "moves", "--auto-approve", "--parallelism", "8")
        assert again.code == 0, again
        b.assert_exactly_once(served.url)


# -- exactly once under kills, a server restart and faults -------------------------------------------------
FULL = os.environ.get("RECONCILE_LONG_TESTS") == "1"  # by hand: 200 moves, 30+ kills


def test_client_kills_a_server_restart_and_network_faults_apply_every_move_exactly_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("RECONCILE_TEST_SEED") or random.SystemRandom().randrange(1 << 30))
    print(f"\nRECONCILE_TEST_SEED={seed}")  # every random choice below comes from it: re-run with it to reproduce
    rng = random.Random(seed)
    n, kills_wanted = (200, 30) if FULL else (80, 8)
    b = make_batch(tmp_path, n)
    kills = runs = mid_batch = 0
    serials: list[int] = []

    def serial() -> None:  # after every run, killed or not: the state's serial never goes back
        if b.state.exists():
            serials.append(json.loads(b.state.read_text("utf-8"))["serial"])
            assert serials == sorted(serials), serials

    with Served(b.db_url, tmp_path / "server", "--provision-seconds", "0.2") as served:
        with Proxy(served.url, tmp_path / "proxy", "--seed", str(seed), "--rate", "0.2", "--max-delay", "0.1") as px:
            restarted = False
            deadline = time.monotonic() + (900 if FULL else 150)
            while True:
                runs += 1
                assert runs <= kills_wanted + 40 and time.monotonic() < deadline, f"{runs} runs, {kills} kills"
                running = b.popen(px.url, "apply", "moves", "--auto-approve", "--parallelism", "4")
                if kills < kills_wanted:
                    # kill once this run has moved a few customers (plus a jitter into the next step)
                    target = b.provisioned() + 1
                    until = time.monotonic() + 60
                    while running.poll() is None and b.provisioned() < target and time.monotonic() < until:
                        time.sleep(0.02)
                    time.sleep(rng.uniform(0.0, 0.15))
                    if not restarted and kills == kills_wanted // 2:
                        served.kill9()  # the server dies mid-batch too, and comes back on the same port
                        time.sleep(rng.uniform(0.0, 0.5))
                        served.restart()
                        restarted = True
                    if running.poll() is None:
                        running.kill()
                        running.finish(timeout=30)
                        kills += 1
                        serial()
                        st = Counter(b.statuses().values())
                        mid_batch += bool(st["in-progress"]) or 0 < st["applied"] < n
                        continue
                ran = running.finish(timeout=300)
                serial()
                if ran.code == 0 and kills >= kills_wanted:
                    break
            faults = px.faults()
        span = f"{serials[0]}..{serials[-1]}" if serials else "-"
        print(f"{n} moves, {kills} client kills ({mid_batch} mid-batch), server restarted: {restarted}, {runs} apply "
              f"runs, faults: {faults}, state serials {span}")
        assert restarted and kills >= kills_wanted
        assert mid_batch >= kills // 4, f"only {mid_batch} of {kills} kills landed while moves were left"
        b.assert_exactly_once(served.url)
