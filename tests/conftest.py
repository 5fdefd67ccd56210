"""Shared fixtures: a small platform seed, an initialised embedded platform, manifest writers, hypothesis profiles."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, settings
from pg import pg, pg_server  # noqa: F401 (fixtures: a real PostgreSQL server, started once per session)

FIXTURES = Path(__file__).parent / "fixtures"
SEED = FIXTURES / "platform.yaml"  # a copy of conformance scenario 01's platform plus `vault` (sensitive values)
MOVES = FIXTURES / "moves"  # acme-to-northwind.yaml, vault-to-woodgrove.yaml

# Sensitive values in tests/fixtures/platform.yaml and moves/vault-to-woodgrove.yaml: none may ever be printed.
SECRETS = ("old-Secret-9f2", "user-Secret-4b8", "new-Secret-7d1")

# hypothesis: fast by default (CI), `HYPOTHESIS_PROFILE=long` for a long hand run. Its caches go to the temp
# directory, not to .hypothesis/ in the repository.
try:
    import tempfile as _tempfile

    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(os.path.join(_tempfile.gettempdir(), "reconciler-tests-hypothesis"))
except ImportError:  # pragma: no cover - an older hypothesis
    pass
# No example database: tests never write into the repository (a failing example is printed to reproduce it).
settings.register_profile("default", max_examples=60, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("long", max_examples=5000, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's environment never leaks into a test (a CI runner sets GITHUB_ACTIONS, a user NO_COLOR...)."""
    for var in ("RECONCILE_PLATFORM", "RECONCILE_STATE", "RECONCILE_DEBUG", "GITHUB_ACTIONS", "NO_COLOR",
                "FORCE_COLOR", "COLUMNS", "LINES"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def seed_file(tmp_path: Path) -> Path:
    """A private copy of the fixture seed (tests may edit it)."""
    dst = tmp_path / "seed" / "platform.yaml"
    dst.parent.mkdir(exist_ok=True)
    shutil.copyfile(SEED, dst)
    return dst


def init_platform(tmp_path: Path, seed: Path | str = SEED, name: str = "platform.db") -> str:
    """Create an embedded platform from `seed` in tmp_path; returns its sqlite:/// URL."""
    from reconciler.platforms import sqlite

    url = f"sqlite:///{tmp_path / name}"
    sqlite.init(url, str(seed))
    return url


@pytest.fixture
def platform_url(tmp_path: Path) -> str:
    """The fixture seed as an initialised embedded platform in tmp_path."""
    return init_platform(tmp_path)


@dataclass
class Workspace:
    """A tmp directory set up as a user would: platform initialised, env pointing at it, cwd inside it."""

    root: Path
    url: str
    state: Path
    moves: Path

    def write(self, rel: str, text: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        return p


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    root = tmp_path / "ws"
    root.mkdir()
    url = init_platform(root)
    moves = root / "moves"
    shutil.copytree(MOVES, moves)
    state = root / "state.json"
    monkeypatch.chdir(root)
    monkeypatch.setenv("RECONCILE_PLATFORM", url)
    monkeypatch.setenv("RECONCILE_STATE", str(state))
    yield Workspace(root=root, url=url, state=state, moves=moves)


def manifest(name: str = "acme-to-northwind", customer: str = "acme", to: str = "northwind",
             location: str = "eu-west", services: dict[str, Any] | None = None,
             **metadata: Any) -> dict[str, Any]:
    """A CustomerMove document as a dict."""
    spec: dict[str, Any] = {"customer": customer, "toReseller": to, "location": location}
    if services is not None:
        spec["services"] = services
    return {"apiVersion": "reconciler/v1", "kind": "CustomerMove",
            "metadata": {"name": name, **metadata}, "spec": spec}


def manifest_yaml(*docs: dict[str, Any]) -> str:
    """Documents as block-style YAML, separated by `---`."""
    return "---\n".join(yaml.safe_dump(d, sort_keys=False, allow_unicode=True) for d in docs)


@pytest.fixture
def write_manifest(tmp_path: Path) -> Callable[..., Path]:
    """write_manifest("moves/x.yaml", doc_or_text, ...) -> Path (under tmp_path)."""

    def _write(rel: str, *docs: dict[str, Any] | str) -> Path:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        parts = [d if isinstance(d, str) else yaml.safe_dump(d, sort_keys=False, allow_unicode=True) for d in docs]
        p.write_text("---\n".join(parts), encoding="utf-8")
        return p

    return _write


# ---------------------------------------------------------------------------------------------------
# apply, state, engine: tests/test_app_apply.py, test_state.py, test_engine.py, test_apply_crash.py,
# test_apply_properties.py. A platform of their own (tests/fixtures/apply/) so that every count they
# assert stays put; the CLI run in-process through the real error boundary (`cli.main`) or as the
# installed console script in a subprocess.
# ---------------------------------------------------------------------------------------------------
import json as _json  # noqa: E402
import subprocess as _subprocess  # noqa: E402
import sys as _sys  # noqa: E402

import click as _click  # noqa: E402
from click.testing import CliRunner as _CliRunner  # noqa: E402

APPLY_FIXTURES = FIXTURES / "apply"
APPLY_SEED = APPLY_FIXTURES / "platform.yaml"
APPLY_MOVES = APPLY_FIXTURES / "moves"  # 01-globex, 02-acme (dave is on hold), 03-hooli: all to northwind
RECONCILE_BIN = Path(_sys.executable).with_name("reconcile")


@_click.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@_click.argument("argv", nargs=-1, type=_click.UNPROCESSED)
def _reconcile_main(argv: tuple[str, ...]) -> None:
    """`reconcile ARGV...` through cli.main, the one error boundary (messages, hints, exit codes)."""
    from reconciler import cli

    cli.main(list(argv))


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out[-3000:]}\n--- stderr\n{self.err[-3000:]}"


def subprocess_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that steers reconciler, its output or CI detection."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RECONCILE_", "GITHUB_", "HYPOTHESIS_")) and k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(NO_COLOR="1", COLUMNS="200")
    env.update(extra)
    return env


def effective_view(doc: dict[str, Any]) -> dict[str, dict[str, tuple[str, dict[str, Any]]]]:
    """From an exported platform: user -> service -> (SAL id, effective properties).

    Effective = SAL properties from the parent reseller's offering (+) customer overrides (+) user overrides.
    """
    by_id = {c["id"]: c for c in doc["customers"]}
    out: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {}
    for c in doc["customers"]:
        parent = by_id.get(c.get("parent") or "") or {}
        offers = ((parent.get("reseller") or {}).get("services")) or {}
        subs = c.get("services") or {}
        for u in c.get("users") or []:
            view = out.setdefault(u["id"], {})
            for svc, us in (u.get("services") or {}).items():
                sal_props = ((offers.get(svc) or {}).get("sals") or {}).get(us["sal"]) or {}
                eff = {**sal_props, **((subs.get(svc) or {}).get("overrides") or {}), **(us.get("overrides") or {})}
                view[svc] = (us["sal"], eff)
    return out


@dataclass
class Running:
    """A background `reconcile` process (Recon.popen)."""

    proc: _subprocess.Popen[bytes]
    out: Any
    err: Any

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def send_signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def kill(self) -> None:
        self.proc.kill()

    def finish(self, timeout: float = 120) -> Ran:
        """Wait for it (killing it past `timeout`), and return its exit code and output."""
        try:
            code = self.proc.wait(timeout=timeout)
        except _subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        texts = []
        for f in (self.out, self.err):
            f.seek(0)
            texts.append(f.read().decode("utf-8", "replace"))
            f.close()
        return Ran(code, texts[0], texts[1])


class Recon:
    """A workspace for apply tests: an embedded platform, a state path, manifests; the CLI in- or out-of-process."""

    def __init__(self, root: Path, seed: Path | str = APPLY_SEED) -> None:
        from reconciler.platforms import sqlite

        self.root = root
        self.db = root / "platform.db"
        self.url = f"sqlite:///{self.db}"
        self.state = root / "state.json"
        self.backup = root / "state.json.backup"
        self.lock = root / "state.json.lock"
        self.moves = root / "moves"
        root.mkdir(parents=True, exist_ok=True)
        sqlite.init(self.url, str(seed))

    # -- files ------------------------------------------------------------------------------
    def copy_moves(self, src: Path = APPLY_MOVES) -> Path:
        shutil.copytree(src, self.moves, dirs_exist_ok=True)
        return self.moves

    def manifest(self, name: str, customer: str, to: str, location: str = "eu-west",
                 services: dict[str, Any] | None = None, file: str | None = None) -> Path:
        """Write one CustomerMove to moves/<file or name>.yaml."""
        p = self.moves / (file or f"{name}.yaml")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(manifest_yaml(manifest(name, customer, to, location, services)), encoding="utf-8")
        return p

    def settings(self) -> Any:
        from reconciler.config import Settings

        return Settings(platform_url=self.url, state=str(self.state))

    # -- running ----------------------------------------------------------------------------
    def where(self) -> list[str]:
        return ["--platform", self.url, "--state", str(self.state)]

    def cli(self, *args: str, input: str | None = None) -> Ran:
        """`reconcile ARGS` in-process (CliRunner), through cli.main."""
        import inspect

        kwargs: dict[str, Any] = {}
        if "mix_stderr" in inspect.signature(_CliRunner.__init__).parameters:  # click 8.1
            kwargs["mix_stderr"] = False
        r = _CliRunner(**kwargs).invoke(_reconcile_main, list(args), input=input, catch_exceptions=False,
                                        env={"RECONCILE_PLATFORM": self.url, "RECONCILE_STATE": str(self.state),
                                             "NO_COLOR": "1", "COLUMNS": "200"})
        return Ran(r.exit_code, r.stdout, r.stderr)

    def sub(self, *args: str, timeout: float = 120, **env: str) -> Ran:
        """`reconcile ARGS` as the installed console script, in a subprocess."""
        p = _subprocess.run([str(RECONCILE_BIN), *args], cwd=self.root, capture_output=True, text=True,
                            stdin=_subprocess.DEVNULL, timeout=timeout,
                            env=subprocess_env(RECONCILE_PLATFORM=self.url, RECONCILE_STATE=str(self.state), **env))
        return Ran(p.returncode, p.stdout, p.stderr)

    def popen(self, *args: str, **env: str) -> Running:
        """`reconcile ARGS` started in the background; its output goes to files (a full pipe never blocks it)."""
        import tempfile

        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115 (closed by finish)
        proc = _subprocess.Popen([str(RECONCILE_BIN), *args], cwd=self.root, stdin=_subprocess.DEVNULL,
                                 stdout=out, stderr=err,
                                 env=subprocess_env(RECONCILE_PLATFORM=self.url, RECONCILE_STATE=str(self.state),
                                                    **env))
        return Running(proc, out, err)

    # -- reading ----------------------------------------------------------------------------
    def export(self) -> dict[str, Any]:
        """The live platform, read through SqlitePlatform (what `platform export` prints)."""
        from reconciler.platforms.sqlite import SqlitePlatform

        p = SqlitePlatform.open(self.url)
        try:
            return p.export()
        finally:
            p.close()

    def requests(self, customer: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.export()["requests"] if customer is None or r["customer"] == customer]

    def customer(self, cid: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        return next(c for c in (doc or self.export())["customers"] if c["id"] == cid)

    def state_bytes(self) -> bytes:
        return self.state.read_bytes()

    def state_json(self) -> dict[str, Any]:
        """The state file, checked against schemas/state.schema.json and loadable by reconciler.state."""
        from jsonschema import Draft202012Validator

        from reconciler import schema
        from reconciler.state import file as states

        doc: dict[str, Any] = _json.loads(self.state.read_text("utf-8"))
        errors = [f"{list(e.absolute_path)}: {e.message}"
                  for e in Draft202012Validator(schema.load("state")).iter_errors(doc)]
        assert not errors, errors
        assert states.load(self.state) is not None
        return doc

    def edit_platform(self, edit: Callable[[dict[str, Any]], None]) -> None:
        """Change the platform the way an operator would: export, edit the document, `platform init --force`."""
        from reconciler.platforms import sqlite

        doc = self.export()
        edit(doc)
        seed = self.root / "edited-seed.json"
        seed.write_text(_json.dumps(doc), encoding="utf-8")
        sqlite.init(self.url, str(seed), force=True)


@pytest.fixture
def recon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recon:
    """tests/fixtures/apply/platform.yaml as an embedded platform in tmp_path/ws; cwd there."""
    ws = Recon(tmp_path / "ws")
    monkeypatch.chdir(ws.root)
    return ws


def write_big_batch(root: Path, customers: int = 110, users: int = 3) -> Recon:
    """A JSON seed of `customers` customers x `users` users under reseller alpha, a second reseller beta,
    and one manifest per customer moving it to beta (its `std` SAL mapped to `b-std`)."""
    root.mkdir(parents=True, exist_ok=True)
    mail = {"id": "mail", "name": "Mail",
            "properties": {"quotaMB": {"type": "integer"}, "archive": {"type": "boolean"},
                           "password": {"type": "string", "sensitive": True}}}
    seed: dict[str, Any] = {
        "apiVersion": "reconciler/v1", "kind": "Platform",
        "locations": [{"id": "eu-west", "name": "EU West"}], "services": [mail],
        "customers": [
            {"id": "alpha", "name": "Alpha", "location": "eu-west", "parent": None,
             "reseller": {"services": {"mail": {"plans": ["a-mail"], "sals": {
                 "std": {"quotaMB": 1024, "archive": False}, "pro": {"quotaMB": 4096, "archive": True}}}}}},
            {"id": "beta", "name": "Beta", "location": "eu-west", "parent": None,
             "reseller": {"services": {"mail": {"plans": ["b-mail"], "sals": {
                 "b-std": {"quotaMB": 2048, "archive": False}, "pro": {"quotaMB": 8192, "archive": True}}}}}},
        ],
        "requests": [],
    }
    moves = root / "moves"
    moves.mkdir(parents=True, exist_ok=True)
    for i in range(customers):
        cid = f"cust-{i:03d}"
        seed["customers"].append({
            "id": cid, "name": f"Customer {i}", "location": "eu-west", "parent": "alpha",
            "services": {"mail": {"plan": "a-mail", "sal": "std",
                                  "overrides": {"archive": True} if i % 5 == 0 else {}}},
            "users": [{"id": f"u{j}@{cid}.example",
                       "services": {"mail": {"sal": "pro" if j == 0 else "std",
                                             "overrides": {"quotaMB": 512 * (j + 1)} if (i + j) % 4 == 0 else {}}}}
                      for j in range(users)]})
        (moves / f"{cid}.yaml").write_text(manifest_yaml(manifest(
            f"move-{cid}", cid, "beta", "eu-west",
            {"mail": {"plan": "b-mail", "sals": {"std": "b-std"}}})), encoding="utf-8")
    (root / "seed.json").write_text(_json.dumps(seed), encoding="utf-8")
    return Recon(root, root / "seed.json")


@pytest.fixture(scope="session")
def make_recon() -> Callable[..., Recon]:
    """Recon(root, seed=APPLY_SEED): another workspace (e.g. one per hypothesis example)."""
    return Recon


@pytest.fixture(scope="session")
def big_batch() -> Callable[..., Recon]:
    """write_big_batch(root, customers=110, users=3) -> Recon with root/seed.json and root/moves/."""
    return write_big_batch


@pytest.fixture(scope="session")
def effective() -> Callable[[dict[str, Any]], dict[str, dict[str, tuple[str, dict[str, Any]]]]]:
    """effective_view(exported platform) -> user -> service -> (SAL, effective properties)."""
    return effective_view


# ---------------------------------------------------------------------------------------------------
# CLI in-process through `reconciler.cli.main` (the one error boundary), with stdout and stderr apart:
# used by test_cli.py, test_render.py, test_config.py, test_fuzz.py.
# ---------------------------------------------------------------------------------------------------
def run_main(*args: str, input: str | None = None, env: dict[str, str | None] | None = None) -> Ran:
    """`reconcile ARGS` in-process: exit code, stdout, stderr (works with click 8.1's CliRunner and later)."""
    import inspect

    from reconciler.cli import main

    kwargs: dict[str, Any] = {}
    if "mix_stderr" in inspect.signature(_CliRunner.__init__).parameters:
        kwargs["mix_stderr"] = False
    runner = _CliRunner(**kwargs)
    with runner.isolation(input=input, env=env) as streams:
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            _sys.stdout.flush()  # what reconciler wrote to sys.stdout itself, not through click.echo
            _sys.stderr.flush()
        out = streams[0].getvalue().decode("utf-8", "replace")
        err = streams[1].getvalue().decode("utf-8", "replace")
    return Ran(code, out, err)


def generated_seed(path: Path, customers: dict[str, int], *, secret: str | None = None) -> Path:
    """A JSON seed: resellers `src` and `dst` (location eu) offering service `mail` (quota, archive, sensitive
    `pw`), and each customer NAME -> USERS under `src` holding SAL `s` (src: quota 1, dst: quota 2), so a move
    to `dst` changes every user. `secret`: the customers' `pw` override."""
    import json

    mail = {"id": "mail", "properties": {"quota": {"type": "integer"}, "archive": {"type": "boolean"},
                                         "pw": {"type": "string", "sensitive": True}}}
    seed: dict[str, Any] = {
        "apiVersion": "reconciler/v1", "kind": "Platform", "locations": [{"id": "eu"}], "services": [mail],
        "customers": [
            {"id": "src", "location": "eu", "parent": None,
             "reseller": {"services": {"mail": {"plans": ["p"], "sals": {"s": {"quota": 1, "archive": False}}}}}},
            {"id": "dst", "location": "eu", "parent": None,
             "reseller": {"services": {"mail": {"plans": ["p"], "sals": {"s": {"quota": 2, "archive": False}}}}}},
        ]}
    for cid, n in customers.items():
        seed["customers"].append({
            "id": cid, "location": "eu", "parent": "src",
            "services": {"mail": {"plan": "p", "sal": "s", "overrides": {"pw": secret} if secret else {}}},
            "users": [{"id": f"u{j:03d}@{cid}.example", "services": {"mail": {"sal": "s"}}} for j in range(n)]})
    path.write_text(json.dumps(seed), encoding="utf-8")
    return path
