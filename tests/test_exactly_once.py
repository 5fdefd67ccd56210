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

import json
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import RECONCILE_BIN, Ran, Running, generated_seed, manifest, manifest_yaml, subprocess_env
from peers import TOKEN, Proxy, Served, http_available

from reconciler.platforms.sqlite import SqlitePlatform, init

BATCH = 120  # customers moved, 2 users each
MIN_FAULTS = 200
MAX_RUNS = 40  # apply runs before giving up
RUN_SECONDS = 300.0

pytestmark = [pytest.mark.slow]


@pytest.fixture(autouse=True)
def _needs_http() -> None:
    why = http_available()
    if why:
        pytest.skip(why)


@dataclass
class Batch:
    root: Path
    db_url: str
    state: Path

    @property
    def names(self) -> list[str]:
        return [f"c{i:03d}" for i in range(BATCH)]

    def env(self, url: str) -> dict[str, str]:
        return subprocess_env(RECONCILE_PLATFORM=url, RECONCILE_STATE=str(self.state), RECONCILE_TOKEN=TOKEN)

    def run(self, url: str, *args: str, timeout: float = RUN_SECONDS) -> Ran:
        try:
            p = subprocess.run([str(RECONCILE_BIN), *args], cwd=self.root, capture_output=True, text=True,
                               stdin=subprocess.DEVNULL, timeout=timeout, env=self.env(url))
        except subprocess.TimeoutExpired as e:
            return Ran(-1, str(e.stdout or ""), f"timed out after {timeout}s")
        return Ran(p.returncode, p.stdout, p.stderr)

    def popen(self, url: str, *args: str) -> Running:
        import tempfile

        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115 (closed by finish)
        proc = subprocess.Popen([str(RECONCILE_BIN), *args], cwd=self.root, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=err, env=self.env(url))
        return Running(proc, out, err)

    def apply_until_done(self, url: str) -> list[Ran]:
        """`reconcile apply moves --auto-approve` until it exits 0, at most MAX_RUNS times."""
        runs: list[Ran] = []
        for _ in range(MAX_RUNS):
            runs.append(self.run(url, "apply", "moves", "--auto-approve"))
            if runs[-1].code == 0:
                return runs
        raise AssertionError(f"apply never succeeded in {MAX_RUNS} runs; the last: {runs[-1]}")

    def export(self) -> dict[str, Any]:
        p = SqlitePlatform.open(self.db_url)
        try:
            return p.export()
        finally:
            p.close()

    def provisioned(self) -> int:
        return sum(r["status"] == "Provisioned" for r in self.export()["requests"])

    def wait_provisioned(self, n: int, running: Running, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.provisioned() < n:
            assert running.poll() is None, f"apply ended (exit {running.poll()}) before {n} moves were provisioned"
            assert time.monotonic() < deadline, f"fewer than {n} moves provisioned after {timeout}s"
            time.sleep(0.05)

    def assert_exactly_once(self, url: str) -> None:
        doc = self.export()
        by_customer: dict[str, Counter[str]] = {}
        provisioned: dict[str, str] = {}
        for r in doc["requests"]:
            assert r["type"] == "CustomerMove"
            by_customer.setdefault(r["customer"], Counter())[r["status"]] += 1
            if r["status"] == "Provisioned":
                provisioned[r["customer"]] = r["id"]
        assert set(by_customer) == set(self.names)
        wrong = {c: dict(n) for c, n in by_customer.items() if n["Provisioned"] != 1 or n["Requested"]
                 or n["InProgress"]}
        assert not wrong, f"not exactly one Provisioned request (and nothing pending): {wrong}"
        parents = {c["id"]: c["parent"] for c in doc["customers"]}
        assert all(parents[c] == "dst" for c in self.names)

        plan = self.run(url, "plan", "moves", "--format", "json")
        assert plan.code == 0, plan
        actions = Counter(m["action"] for m in json.loads(plan.out)["moves"])
        assert actions == {"noop": BATCH}, actions

        state = json.loads(self.state.read_text("utf-8"))
        records = state["moves"]
        assert set(records) == {f"move-{c}" for c in self.names}
        for name, rec in records.items():
            assert rec["status"] == "applied", (name, rec["status"])
            assert rec["requests"][-1]["id"] == provisioned[rec["customer"]], name
            assert rec["requests"][-1]["status"] == "Provisioned", name


@pytest.fixture
def batch(tmp_path: Path) -> Batch:
    root = tmp_path / "ws"
    (root / "moves").mkdir(parents=True)
    seed = generated_seed(tmp_path / "seed.json", {f"c{i:03d}": 2 for i in range(BATCH)})
    db_url = f"sqlite:///{root / 'platform.db'}"
    init(db_url, str(seed))
    for i in range(BATCH):
        c = f"c{i:03d}"
        (root / "moves" / f"{c}.yaml").write_text(manifest_yaml(manifest(f"move-{c}", c, "dst", "eu")),
                                                  encoding="utf-8")
    return Batch(root, db_url, root / "state.json")


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
