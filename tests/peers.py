"""Real network peers for tests: the reference server (`reconcile platform serve`) and the fault proxy
(tests/faultproxy.py), each a subprocess on loopback that announces its address on stdout.

Every wait is bounded and every process is stopped on the way out (`with Served(...)`, `with Proxy(...)`,
or `with serving(...)`, which kills: a test leaving requests of 60 s in flight does not wait for them).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from conftest import RECONCILE_BIN, Ran, Running, generated_seed, manifest, manifest_yaml, subprocess_env

if TYPE_CHECKING:
    import httpx

TOKEN = "contract-write-token-5e1"
READ_TOKEN = "contract-read-token-8c2"
FAULTPROXY = Path(__file__).with_name("faultproxy.py")
READY_TIMEOUT = 60.0


def http_available() -> str | None:
    """Why the served platform cannot be tested here (the HTTP provider or server is not in this tree), or None."""
    for module in ("reconciler.platforms.http", "reconciler.platforms.server"):
        try:
            found = importlib.util.find_spec(module)
        except ImportError:
            found = None
        if found is None:
            return f"{module} is not written yet (branch issue-http not merged)"
    for module in ("starlette", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            return f"the server extra is not installed ({module})"
    return None


class _Process:
    """A subprocess that prints one `... http://HOST:PORT` line when ready; its output goes to files.

    READY matches that whole line, newline included (a line half written is not ready), its address in
    the group `url`."""

    READY: re.Pattern[str]

    def __init__(self, argv: list[str], logs: Path, env: dict[str, str], cwd: Path | None = None) -> None:
        self.argv, self.logs, self.env, self.cwd = argv, logs, env, cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.ready_line = ""
        self.starts = 0
        self._out: IO[bytes] | None = None
        self._err: IO[bytes] | None = None

    @property
    def out_path(self) -> Path:
        return self.logs.with_name(f"{self.logs.name}.{self.starts}.out")

    @property
    def err_path(self) -> Path:
        return self.logs.with_name(f"{self.logs.name}.{self.starts}.err")

    def start(self, timeout: float = READY_TIMEOUT) -> str:
        self.starts += 1
        self.logs.parent.mkdir(parents=True, exist_ok=True)
        self._out, self._err = open(self.out_path, "wb"), open(self.err_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
                                     env=self.env, cwd=self.cwd, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.READY.search(self.out_path.read_text("utf-8", "replace"))
            if m:
                self.url, self.ready_line = m.group("url"), m.group(0)
                return self.url
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.argv[:3]} did not become ready: {self.output()}")

    def output(self) -> str:
        parts = []
        for p in (self.out_path, self.err_path):
            with contextlib.suppress(OSError):
                parts.append(p.read_text("utf-8", "replace")[-4000:])
        return "\n--- stderr\n".join(parts)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL, no goodbye: what a crash or the OOM killer does."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._close_logs()

    def stderr(self) -> str:
        return self.err_path.read_text("utf-8", "replace")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """`signum` (SIGTERM: graceful), SIGKILL past `timeout`; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._close_logs()
        return self.proc.returncode

    def _close_logs(self) -> None:
        for f in (self._out, self._err):
            if f is not None:
                f.close()
        self._out = self._err = None

    def __enter__(self) -> _Process:
        if not self.alive():
            self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class Served(_Process):
    """`reconcile platform serve --platform URL --listen 127.0.0.1:0 [...]` with a write and a read token
    (`env` adds to or overrides its environment)."""

    READY = re.compile(r"^serving \S+ at (?P<url>https?://\S+)\n", re.M)

    def __init__(self, platform_url: str, logs: Path, *extra: str, port: int = 0, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        environment = subprocess_env(RECONCILE_SERVER_TOKEN=TOKEN, RECONCILE_SERVER_READ_TOKEN=READ_TOKEN)
        environment.update(env or {})
        super().__init__([str(RECONCILE_BIN), "platform", "serve", "--platform", platform_url,
                          "--listen", f"127.0.0.1:{port}", *extra], logs, environment, cwd)
        self.extra = extra

    def client(self, token: str | None = TOKEN, **kw: Any) -> httpx.Client:
        """An HTTP client of the served API with `token` (None: no Authorization header)."""
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10, **kw)

    def restart(self) -> str:
        """Start again on the same port (after stop or kill9): clients keep their URL."""
        port = int(self.url.rsplit(":", 1)[1])
        self.argv[self.argv.index("--listen") + 1] = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:  # the old socket may linger a moment after a kill
            try:
                return self.start()
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


class Proxy(_Process):
    """tests/faultproxy.py in front of `upstream`."""

    READY = re.compile(r"^proxy at (?P<url>http://\S+)\n", re.M)

    def __init__(self, upstream: str, logs: Path, *args: str) -> None:
        super().__init__([sys.executable, str(FAULTPROXY), "--upstream", upstream, *args], logs,
                         subprocess_env())

    def faults(self) -> dict[str, int]:
        """The proxy's count of faults injected so far, by kind (GET /_faults, never itself faulted)."""
        import httpx

        counts: dict[str, int] = httpx.get(f"{self.url}/_faults", timeout=10).json()
        return counts


@contextlib.contextmanager
def serving(platform_url: str, workdir: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """A served platform started in `workdir` (its logs there too), killed on the way out."""
    served = Served(platform_url, workdir / f"server-{time.monotonic_ns()}", *args, env=env, cwd=workdir)
    served.start()
    try:
        yield served
    finally:
        served.kill9()


def until(what: Callable[[], Any], timeout: float = 20, step: float = 0.05) -> Any:
    """Poll `what` until it returns something truthy, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {what}")
        time.sleep(step)


def client_env(url: str, token: str = TOKEN) -> dict[str, str]:
    """The environment of a `reconcile` run against a served platform at `url`."""
    return {"RECONCILE_PLATFORM": url, "RECONCILE_TOKEN": token}


# -- a batch of moves applied across the network --------------------------------------------------------
@dataclass
class Batch:
    """`n` small customers c000.. under `src`, one manifest each (move-c000..) moving it to `dst`."""

    root: Path
    db_url: str
    n: int
    max_runs: int = 40  # apply_until_done gives up after these

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def customers(self) -> list[str]:
        return [f"c{i:03d}" for i in range(self.n)]

    @property
    def names(self) -> list[str]:
        return [f"move-{c}" for c in self.customers]

    def env(self, url: str) -> dict[str, str]:
        return subprocess_env(RECONCILE_PLATFORM=url, RECONCILE_STATE=str(self.state), RECONCILE_TOKEN=TOKEN)

    def run(self, url: str, *args: str, timeout: float = 300) -> Ran:
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

    def apply_until_done(self, url: str, *args: str) -> list[Ran]:
        """`reconcile apply moves --auto-approve` until it exits 0, at most max_runs times."""
        runs: list[Ran] = []
        for _ in range(self.max_runs):
            runs.append(self.run(url, "apply", "moves", "--auto-approve", *args))
            if runs[-1].code == 0:
                return runs
        raise AssertionError(f"apply never succeeded in {self.max_runs} runs; the last: {runs[-1]}")

    def export(self) -> dict[str, Any]:
        from reconciler.platforms.sqlite import SqlitePlatform

        p = SqlitePlatform.open(self.db_url)
        try:
            return p.export()
        finally:
            p.close()

    def requests(self) -> list[dict[str, Any]]:
        return list(self.export()["requests"])

    def provisioned(self) -> int:
        return sum(r["status"] == "Provisioned" for r in self.requests())

    def statuses(self) -> dict[str, str]:
        if not self.state.exists():
            return {}
        return {n: r["status"] for n, r in json.loads(self.state.read_text("utf-8"))["moves"].items()}

    def wait_provisioned(self, n: int, running: Running, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.provisioned() < n:
            assert running.poll() is None, f"apply ended (exit {running.poll()}) before {n} moves were provisioned"
            assert time.monotonic() < deadline, f"fewer than {n} moves provisioned after {timeout}s"
            time.sleep(0.05)

    def assert_exactly_once(self, url: str) -> None:
        """One Provisioned CustomerMove per moved customer and nothing pending; no request the state does not
        know; every move recorded applied with the very request the platform ran; every plan a no-op."""
        doc = self.export()
        by_customer: dict[str, Counter[str]] = {}
        provisioned: dict[str, str] = {}
        for r in doc["requests"]:
            assert r["type"] == "CustomerMove"
            by_customer.setdefault(r["customer"], Counter())[r["status"]] += 1
            if r["status"] == "Provisioned":
                provisioned[r["customer"]] = r["id"]
        assert set(by_customer) == set(self.customers)
        wrong = {c: dict(k) for c, k in by_customer.items() if k["Provisioned"] != 1 or k["Requested"]
                 or k["InProgress"]}
        assert not wrong, f"not exactly one Provisioned request (and nothing pending): {wrong}"
        parents = {c["id"]: c["parent"] for c in doc["customers"]}
        assert all(parents[c] == "dst" for c in self.customers)
        st = json.loads(self.state.read_text("utf-8"))
        known = {q["id"] for rec in st["moves"].values() for q in rec["requests"]}
        assert {r["id"] for r in doc["requests"]} <= known, "the platform ran a request the state does not know"
        assert set(st["moves"]) == set(self.names)
        for name, rec in st["moves"].items():
            assert rec["status"] == "applied", (name, rec["status"])
            assert rec["requests"][-1]["id"] == provisioned[rec["customer"]], name
            assert rec["requests"][-1]["status"] == "Provisioned", name
        plan = self.run(url, "plan", "moves", "--format", "json")
        assert plan.code == 0, plan
        assert Counter(m["action"] for m in json.loads(plan.out)["moves"]) == {"noop": self.n}


def make_batch(tmp_path: Path, n: int, users: int = 1) -> Batch:
    from reconciler.platforms.sqlite import init

    root = tmp_path / "ws"
    (root / "moves").mkdir(parents=True)
    seed = generated_seed(tmp_path / "seed.json", {f"c{i:03d}": users for i in range(n)})
    db_url = f"sqlite:///{root / 'platform.db'}"
    init(db_url, str(seed))
    for i in range(n):
        c = f"c{i:03d}"
        (root / "moves" / f"{c}.yaml").write_text(manifest_yaml(manifest(f"move-{c}", c, "dst", "eu")),
                                                  encoding="utf-8")
    return Batch(root, db_url, n)
