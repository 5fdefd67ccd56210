"""Real network peers for tests: the reference server (`reconcile platform serve`) and the fault proxy
(tests/faultproxy.py), each a subprocess on loopback that announces its address on stdout.

Every wait is bounded and every process is killed on the way out (`with Served(...)`, `with Proxy(...)`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from conftest import RECONCILE_BIN, subprocess_env

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
    """A subprocess that prints one `... http://HOST:PORT` line when ready; its output goes to files."""

    READY: re.Pattern[str]

    def __init__(self, argv: list[str], logs: Path, env: dict[str, str], cwd: Path | None = None) -> None:
        self.argv, self.logs, self.env, self.cwd = argv, logs, env, cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
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
                self.url = m.group(1)
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

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (graceful), SIGKILL past `timeout`; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
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
    """`reconcile platform serve --platform URL --listen 127.0.0.1:0 [...]` with a write and a read token."""

    READY = re.compile(r"^serving \S+ at (http://\S+)$", re.M)

    def __init__(self, platform_url: str, logs: Path, *extra: str, port: int = 0) -> None:
        env = subprocess_env(RECONCILE_SERVER_TOKEN=TOKEN, RECONCILE_SERVER_READ_TOKEN=READ_TOKEN)
        super().__init__([str(RECONCILE_BIN), "platform", "serve", "--platform", platform_url,
                          "--listen", f"127.0.0.1:{port}", *extra], logs, env)
        self.extra = extra

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

    READY = re.compile(r"^proxy at (http://\S+)$", re.M)

    def __init__(self, upstream: str, logs: Path, *args: str) -> None:
        super().__init__([sys.executable, str(FAULTPROXY), "--upstream", upstream, *args], logs,
                         subprocess_env())

    def faults(self) -> dict[str, int]:
        """The proxy's count of faults injected so far, by kind (GET /_faults, never itself faulted)."""
        import httpx

        counts: dict[str, int] = httpx.get(f"{self.url}/_faults", timeout=10).json()
        return counts


def client_env(url: str, token: str = TOKEN) -> dict[str, str]:
    """The environment of a `reconcile` run against a served platform at `url`."""
    return {"RECONCILE_PLATFORM": url, "RECONCILE_TOKEN": token}
