"""Exactly once across the network (contract section 10): apply over HTTP through faults and crashes.

A platform of BATCH small customers (conftest.generated_seed), one manifest each moving it to `dst`,
served by `reconcile platform serve` on loopback. Apply runs as the installed console script and is
re-run until it exits 0 (a bounded number of runs), then the platform must hold exactly one Provisioned
CustomerMove request per moved customer and nothing pending, every plan of the batch is a no-op, and
the state records each move applied with the very request the platform ran.

- through tests/faultproxy.py: resets, lost responses, 503s, 502s after the fact, duplicate delivery and
  delays, at least MIN_FAULTS of them (the proxy counts);
- the client killed with SIGKILL mid-apply, then re-run;
- the server killed with SIGKILL mid-apply and restarted on the same port, then re-run.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from peers import Batch, Proxy, Served, http_available, make_batch

BATCH = 120  # customers moved, 2 users each
MIN_FAULTS = 200
RUN_SECONDS = 300.0

pytestmark = [pytest.mark.slow]


@pytest.fixture(autouse=True)
def _needs_http() -> None:
    why = http_available()
    if why:
        pytest.skip(why)


@pytest.fixture
def batch(tmp_path: Path) -> Batch:
    return make_batch(tmp_path, BATCH, users=2)


def test_apply_through_faults_is_exactly_once(batch: Batch, tmp_path: Path) -> None:
    with Served(batch.db_url, tmp_path / "server", "--provision-seconds", "0.02") as served:
        with Proxy(served.url, tmp_path / "proxy", "--seed", "1010", "--rate", "0.45", "--max-delay", "0.2") as proxy:
            runs = batch.apply_until_done(proxy.url)
            faults = proxy.faults()
        print(f"apply runs: {len(runs)} (exit codes {[r.code for r in runs]}); faults: {faults}")
        assert faults["faults"] >= MIN_FAULTS, faults
        assert all(faults[k] > 0 for k in ("reset", "lost", "503", "502-after", "duplicate", "delay")), faults
        batch.assert_exactly_once(served.url)


def test_a_client_killed_mid_apply_then_rerun_is_exactly_once(batch: Batch, tmp_path: Path) -> None:
    with Served(batch.db_url, tmp_path / "server", "--provision-seconds", "0.05") as served:
        running = batch.popen(served.url, "apply", "moves", "--auto-approve")
        try:
            batch.wait_provisioned(BATCH // 3, running)
        finally:
            running.kill()  # SIGKILL: no handler runs, no state is written on the way out
            ran = running.finish(timeout=30)
        assert ran.code == -9
        assert batch.provisioned() < BATCH
        batch.apply_until_done(served.url)
        batch.assert_exactly_once(served.url)


def test_a_server_killed_mid_apply_and_restarted_is_exactly_once(batch: Batch, tmp_path: Path) -> None:
    with Served(batch.db_url, tmp_path / "server", "--provision-seconds", "0.05") as served:
        running = batch.popen(served.url, "apply", "moves", "--auto-approve")
        try:
            batch.wait_provisioned(BATCH // 3, running)
            served.kill9()  # requests accepted and not yet run must survive: the restarted server runs them
            assert batch.provisioned() < BATCH
            time.sleep(0.5)
            served.restart()
            first = running.finish(timeout=RUN_SECONDS)
        finally:
            if running.poll() is None:
                running.kill()
                running.finish(timeout=30)
        print(f"the apply that lived through the restart: exit {first.code}")
        batch.apply_until_done(served.url)
        batch.assert_exactly_once(served.url)
