"""The embedded platform: `init` from a seed (all or nothing, --force) and opening a database.

The provisioning engine and export round-trips are tested in test_engine*.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
import yaml
from conftest import SEED

from reconciler import app
from reconciler.config import Settings
from reconciler.errors import PlatformError, ReconcilerError
from reconciler.model import MoveOrder
from reconciler.platforms import open_platform, sqlite
from reconciler.platforms.sqlite import SqlitePlatform

COUNTS = {"locations": 2, "services": 2, "customers": 8, "users": 7, "requests": 0}
BAD = "apiVersion: reconciler/v1\nkind: Platform\nlocations: [{id: eu}]\ncustomers:\n  - {id: a, location: mars}\n"


def listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def url_of(p: Path) -> str:
    return f"sqlite:///{p}"


def bad_seed(tmp_path: Path) -> str:
    p = tmp_path / "seeds" / "bad.yaml"
    p.parent.mkdir(exist_ok=True)
    p.write_text(BAD)
    return str(p)


def customers_of(url: str) -> list[str]:
    p = SqlitePlatform.open(url)
    try:
        return [c["id"] for c in p.export()["customers"]]
    finally:
        p.close()


def test_init_creates_the_platform_and_counts_it(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    assert sqlite.init(url_of(db), str(SEED)) == COUNTS
    assert db.is_file()
    p = SqlitePlatform.open(url_of(db))
    try:
        assert set(p.catalog()) == {"hosted-exchange", "sharepoint"}
        acme = p.customers(["acme"])["acme"]
        assert acme.parent == "contoso" and acme.location == "eu-west" and not acme.is_reseller
        users = p.users(["acme"])["acme"]
        assert [u.id for u in users] == ["alice@acme.example", "bob@acme.example", "carol@acme.example"]
    finally:
        p.close()


def test_init_creates_missing_parent_directories(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "p.db"
    sqlite.init(url_of(db), str(SEED))
    assert db.is_file()


def test_a_bad_seed_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(PlatformError) as e:
        sqlite.init(url_of(target / "p.db"), bad_seed(tmp_path))
    assert "nothing was created" in e.value.message
    assert listing(target) == []  # no database, no temp file, no journal


def test_a_bad_seed_creates_no_directory_either(tmp_path: Path) -> None:
    with pytest.raises(PlatformError):
        sqlite.init(url_of(tmp_path / "new" / "p.db"), bad_seed(tmp_path))
    assert not (tmp_path / "new").exists()


def test_a_failure_while_writing_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(conn: sqlite3.Connection, doc: object) -> dict[str, int]:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite, "_write", boom)
    with pytest.raises(PlatformError) as e:
        sqlite.init(url_of(tmp_path / "p.db"), str(SEED))
    assert e.value.message == (f"cannot create the platform database {tmp_path / 'p.db'}: disk I/O error; "
                               "nothing was created")
    assert listing(tmp_path) == []


def test_an_existing_platform_needs_force(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    sqlite.init(url_of(db), str(SEED))
    before = db.read_bytes()
    with pytest.raises(PlatformError) as e:
        sqlite.init(url_of(db), str(SEED))
    assert e.value.message == f"a platform already exists at {db}"
    assert e.value.hint is not None and "--force" in e.value.hint
    assert db.read_bytes() == before


def test_force_replaces_the_platform(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    sqlite.init(url_of(db), str(SEED))
    small = tmp_path / "small.yaml"
    small.write_text("apiVersion: reconciler/v1\nkind: Platform\nlocations: [{id: eu}]\n"
                     "customers: [{id: solo, location: eu, parent: null, reseller: {}}]\n")
    assert sqlite.init(url_of(db), str(small), force=True) == {
        "locations": 1, "services": 0, "customers": 1, "users": 0, "requests": 0}
    assert customers_of(url_of(db)) == ["solo"]
    assert sorted(os.listdir(tmp_path)) == ["p.db", "small.yaml"]


def test_force_with_a_bad_seed_keeps_the_old_platform(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    sqlite.init(url_of(db), str(SEED))
    with pytest.raises(PlatformError):
        sqlite.init(url_of(db), bad_seed(tmp_path), force=True)
    assert "acme" in customers_of(url_of(db))
    assert sorted(os.listdir(tmp_path)) == ["p.db", "seeds"]


def test_a_json_seed_works(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps(yaml.safe_load(SEED.read_text())))
    assert sqlite.init(url_of(tmp_path / "p.db"), str(seed)) == COUNTS
    yaml_db = tmp_path / "y.db"
    sqlite.init(url_of(yaml_db), str(SEED))
    a, b = SqlitePlatform.open(url_of(tmp_path / "p.db")), SqlitePlatform.open(url_of(yaml_db))
    try:
        assert a.export() == b.export()
    finally:
        a.close()
        b.close()


# -- opening -------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"", b"hello, not a database\n" * 10, b"SQLite format 3\x00" + b"\x00" * 100])
def test_a_file_that_is_not_a_platform_gives_a_clear_error(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "p.db"
    f.write_bytes(content)
    with pytest.raises(PlatformError) as e:
        SqlitePlatform.open(url_of(f))
    assert e.value.message.startswith(f"{f} is not a reconciler platform database")
    assert e.value.hint is not None and "platform init" in e.value.hint


def test_another_applications_sqlite_database_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "other.db"
    conn = sqlite3.connect(f)
    conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('format', 'someone-else/3')")
    conn.commit()
    conn.close()
    with pytest.raises(PlatformError) as e:
        SqlitePlatform.open(url_of(f))
    assert e.value.message == f"{f} is not a reconciler platform database (format 'someone-else/3')"


def test_another_sqlite_database_without_meta_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "other.db"
    conn = sqlite3.connect(f)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(PlatformError) as e:
        SqlitePlatform.open(url_of(f))
    assert e.value.message.startswith(f"{f} is not a reconciler platform database")


def test_a_missing_database_without_a_seed(tmp_path: Path) -> None:
    f = tmp_path / "none.db"
    with pytest.raises(PlatformError) as e:
        SqlitePlatform.open(url_of(f))
    assert e.value.message == f"no platform database at {f}"
    assert e.value.hint == "create it with `reconcile platform init --seed FILE`"
    assert not f.exists()


def test_a_missing_database_is_created_from_a_seed_and_says_so(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "auto.db"
    p = open_platform(url_of(f), {"seed": str(SEED)})
    try:
        assert "acme" in p.customers(["acme"])
    finally:
        p.close()
    assert capsys.readouterr().err == f"created {f} from seed {SEED}: " + ", ".join(
        f"{v} {k}" for k, v in COUNTS.items()) + "\n"


def test_a_seed_never_replaces_a_database_created_meanwhile(tmp_path: Path) -> None:
    """Two runs found no database: the second creation fails (exclusive) and uses the first's database."""
    f = tmp_path / "auto.db"
    sqlite.init(url_of(f), str(SEED))
    p = SqlitePlatform.open(url_of(f))
    p.submit("rq-written-by-the-first", MoveOrder("ghost", "northwind", {}, {}))
    p.close()
    sqlite.create_from_seed(url_of(f), str(SEED))  # lost the race: nothing replaced
    p = SqlitePlatform.open(url_of(f))
    try:
        assert p.request("rq-written-by-the-first") is not None
    finally:
        p.close()
    with pytest.raises(PlatformError):
        sqlite.init(url_of(f), str(SEED), exclusive=True)


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://relative.db", "postgres://x/y"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ReconcilerError):
        open_platform(url)


def test_init_through_app_refuses_non_sqlite_urls(tmp_path: Path) -> None:
    with pytest.raises(ReconcilerError) as e:
        app.platform_init(Settings(platform_url="postgres://u:secret@db/x", state="s.json"), str(SEED))
    assert "sqlite:///PATH" in e.value.message
    assert "secret" not in e.value.message
