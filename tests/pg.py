"""A real PostgreSQL server for the tests: a throwaway cluster started by .ci/pg-cluster, once per session.

Skipped only when no server binaries exist (no `pg_ctl`), and never under CI=true: CI installs them.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_CLUSTER = Path(__file__).resolve().parents[1] / ".ci" / "pg-cluster"


def server_binaries() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


@dataclass
class PgServer:
    """One running cluster: the role `reconciler` (a password over TCP) owns the database `reconciler`."""

    dir: Path
    bin: Path
    url: str  # postgresql://reconciler@127.0.0.1:PORT/reconciler (no password)
    port: int
    password: str

    def state_url(self, name: str | None = None, schema: str | None = None) -> str:
        """A state URL of its own (a fresh name per test unless given)."""
        query = [f"name={name or 'test-' + uuid.uuid4().hex[:12]}"]
        if schema:
            query.append(f"schema={schema}")
        return f"{self.url}?{'&'.join(query)}"

    def env(self) -> dict[str, str]:
        """What a `reconcile` process needs to log in: the password from PGPASSWORD, no ~/.pgpass."""
        return {"PGPASSWORD": self.password, "PGPASSFILE": str(self.dir / "no-pgpass")}

    def psql(self, sql: str, db: str = "reconciler") -> str:
        """SQL as the superuser over the cluster's private socket; its output (unaligned, tuples only)."""
        argv = [str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.dir / "sock"),
                "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    binaries = server_binaries()
    if binaries is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no PostgreSQL server binaries (pg_ctl): CI must install the postgresql package")
        pytest.skip("no PostgreSQL server binaries (pg_ctl): install the postgresql package to run these tests")
    # Not under pytest's tmp_path: the server runs as the `postgres` user, who cannot enter root's 0700 tree.
    d = Path(tempfile.mkdtemp(prefix="reconciler-pg-"))
    try:
        p = subprocess.run([str(PG_CLUSTER), "start", str(d)], capture_output=True, text=True, timeout=180,
                           stdin=subprocess.DEVNULL, env={**os.environ, "PG_BINDIR": str(binaries)})
        assert p.returncode == 0, f"could not start a PostgreSQL cluster:\n{p.stderr}"
        server = PgServer(dir=d, bin=binaries, url=p.stdout.strip().splitlines()[-1],
                          port=int((d / "port").read_text().strip()), password=(d / "password").read_text().strip())
        yield server
    finally:
        subprocess.run([str(PG_CLUSTER), "stop", str(d)], capture_output=True, timeout=120,
                       stdin=subprocess.DEVNULL, env={**os.environ, "PG_BINDIR": str(binaries)})
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def pg(pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> PgServer:
    """The session's server, with this process's libpq environment pointing at its password."""
    for k, v in pg_server.env().items():
        monkeypatch.setenv(k, v)
    return pg_server
