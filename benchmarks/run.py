"""Time `reconcile` at scale against targets, each step a real process of the installed command.

  python -m benchmarks.run [--shape default|varied] [--customers N] [--users-per M] [--moves K] [--whale W]
                           [--applied A] [--runs R] [--json OUT] [--keep DIR] [--no-fail]

Builds the fixture (benchmarks.generate) in a temporary directory, then runs, each as a subprocess
of the `reconcile` installed next to sys.executable, measuring its wall time and its peak RSS (the
rusage os.wait4 returns for that one child):

  start-up: `reconcile validate` of one manifest against `yamllint` on the same file (paired runs, best
  of 10 each; skipped when yamllint is not installed) and `reconcile --version` (best of 10);
  platform init of the JSON seed; plan of the batch (--format json, to a file); plan of half the
  batch; plan of the whale; apply of the batch (--auto-approve); the re-plan after it (all noop);
  and, on a second platform where A 1-user moves are already applied (setup, not timed against a
  target), the plan of those A manifests plus 10 pending ones.

The floor (benchmarks.floor) is measured in the same run, the same way: a plain Python process that
reads the moved customers' user and user-service rows into dicts, compares them and dumps JSON.
The steps compared with the floor (the floors, the plans, the re-plan) run R times each (--runs, default
3), floor and plan in turn so both see the same load, and the fastest of each counts. Every run's outcome
is checked (exit code, plan summary), so a fast wrong answer never passes. Before timing, the package is
byte-compiled (as `pip install` does): an editable install under PYTHONDONTWRITEBYTECODE would otherwise
compile every module on every run.

--shape varied measures a second fixture (benchmarks.generate): customers of 10 to 100 users, every SAL
in use, half the users with overrides of their own; the targets are the same.

The table also shows each step's CPU time (user + system, from the same rusage): on a machine
shared with other work, wall time grows with the load and CPU time much less.

Prints progress to stderr and a markdown table to stdout; exits 1 when a target fails (0 with
--no-fail), 2 when the benchmark itself cannot run. The targets are those of the default fixture
(4,000 customers x 50 users + a whale of 50,000, 1,000 moves); other sizes are measured against
the same numbers.

Peak RSS caveat: on Linux a child's ru_maxrss includes the RSS of its parent at the time of the
spawn (the old address space's high-water mark survives exec), so this runner keeps itself small:
generation, the floor and reading plan outputs all run in their own processes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform as platform_mod
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.generate import SHAPES, Params

REPO = Path(__file__).resolve().parents[1]
PENDING = 10
STARTUP_RUNS = 10
READY = re.compile(r"^serving \S+ at (http://\S+)$", re.M)  # `reconcile platform serve`, ready

Progress = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchmarkError(Exception):
    """The benchmark cannot go on: a step failed or gave a wrong answer."""


@dataclass(frozen=True)
class Config(Params):
    """The generator's fixture, plus the applied-manifests step's sizes."""

    applied: int = 10_000
    pending: int = PENDING
    http: bool = True  # the apply steps over HTTP (needs the server extra)
    async_moves: int = 200
    async_seconds: float = 0.5
    async_parallelism: int = 16
    pg: bool = False  # the batch apply with the state in PostgreSQL (a throwaway cluster, .ci/pg-cluster)
    startup_runs: int = STARTUP_RUNS  # start-up steps: runs of each command (best kept); 0 skips them
    runs: int = 3  # the floors, plans and re-plan: runs of each (the fastest kept)

    @property
    def half(self) -> int:
        return self.moves // 2


@dataclass(frozen=True)
class Targets:
    """The targets of issues 5 and 14 for the default fixture; None: not checked."""

    validate_yamllint: float | None = 2.5  # validate of one manifest, best of 10, over yamllint's best of 10
    version_s: float | None = 0.15
    init_s: float | None = 10.0
    init_rss_mib: float | None = 300.0  # the seed is streamed, customer by customer
    plan_floor: float | None = 2.0
    plan_s: float | None = 5.0
    half_ratio: float | None = 2.5  # linear in users touched: twice the users, at most 2.5x the time
    whale_floor: float | None = 2.0
    apply_s: float | None = 30.0
    replan_floor: float | None = 0.5
    applied_plan_s: float | None = 2.0
    plan_rss_mib: float | None = 400.0
    http_apply_s: float | None = 60.0  # the 1,000-move apply over HTTP (provisioning at once)
    async_slack: float | None = 1.5  # 200 moves of 0.5 s at N = 16: within 1.5x the ideal plus 5 s
    pg_apply_ratio: float | None = 1.5  # the batch apply with the state in PostgreSQL, against the state file


@dataclass
class Step:
    """One measured process."""

    key: str
    label: str
    argv: list[str]
    wall_s: float
    rss_kib: int
    exit_code: int
    stdout: str
    stderr: str
    cpu_s: float = 0.0  # user + system CPU of the child: less disturbed than wall time by other load
    parent_rss_kib: int = 0  # the runner's own peak when it spawned this child: a floor under rss_kib

    @property
    def rss_mib(self) -> float:
        return self.rss_kib / 1024


@dataclass
class Row:
    step: str
    wall_s: float | None = None
    rss_mib: float | None = None
    cpu_s: float | None = None
    ratio: str = ""
    target: str = ""
    ok: bool | None = None  # None: information only
    note: str = ""

    @property
    def result(self) -> str:
        if self.ok is None:
            return self.note or "info"
        return "PASS" if self.ok else "FAIL"


@dataclass
class Report:
    config: Config
    steps: dict[str, Step] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    code: dict[str, Any] = field(default_factory=dict)  # the reconciler measured: where, which commit
    load: dict[str, list[float]] = field(default_factory=dict)  # load averages at the start and the end

    @property
    def ok(self) -> bool:
        return all(r.ok is not False for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        from reconciler import __version__

        return {
            "ok": self.ok,
            "config": asdict(self.config),
            "machine": {"cpus": os.cpu_count(), "platform": platform_mod.platform(),
                        "python": platform_mod.python_version(), "load": self.load},
            "code": {"version": __version__, **self.code},
            "rows": [dict(asdict(r), result=r.result) for r in self.rows],
            "steps": {k: dict(asdict(s), rss_mib=round(s.rss_mib, 1)) for k, s in self.steps.items()},
        }


def code_info() -> dict[str, Any]:
    """Which reconciler the installed `reconcile` runs: its source directory and git commit (dirty or not)."""
    import reconciler

    src = Path(reconciler.__file__).resolve().parent
    info: dict[str, Any] = {"source": str(src), "commit": None, "dirty": None}
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=src, capture_output=True,
                               text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return info
    if head.returncode == 0:
        info["commit"] = head.stdout.strip()
        info["dirty"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    return info


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- processes ------------------------------------------------------------------------------
def reconcile_command() -> list[str]:
    exe = Path(sys.executable).parent / "reconcile"
    if not exe.exists():
        raise BenchmarkError(f"no `reconcile` next to {sys.executable}; install the project (pip install -e .) "
                             "in this environment")
    return [str(exe)]


def child_env(python_helper: bool, **extra: str) -> dict[str, str]:
    """The environment of a measured process: none of the caller's RECONCILE_* settings, no colour."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILE_")}
    env["NO_COLOR"] = "1"
    env.update(extra)
    env.pop("GITHUB_ACTIONS", None)
    if python_helper:
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


@dataclass(frozen=True)
class Measured:
    wall_s: float
    rss_kib: int  # ru_maxrss: KiB on Linux
    cpu_s: float
    exit_code: int


def measure(argv: Sequence[str], cwd: Path, stdout: Path, stderr: Path,
            env: dict[str, str] | None = None) -> Measured:
    """Run argv to completion and return what os.wait4 says of that one child (not of all children)."""
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        try:
            _, status, usage = os.wait4(p.pid, 0)
        except BaseException:
            p.kill()
            p.wait()
            raise
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return Measured(wall, int(usage.ru_maxrss), usage.ru_utime + usage.ru_stime, p.returncode)


class Bench:
    def __init__(self, config: Config, work: Path, progress: Progress = _stderr) -> None:
        self.config = config
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.report = Report(config)
        self.reconcile = reconcile_command()

    def run(self, key: str, label: str, argv: Sequence[str], python_helper: bool = False,
            expect_exit: int = 0, token: str | None = None, extra_env: dict[str, str] | None = None,
            say: bool = True) -> Step:
        """Measure argv once. Run again under the same key, the fastest run is kept (and returned)."""
        if say:
            self.progress(f"{label} ...")
        out, err = self.logs / f"{key}.out", self.logs / f"{key}.err"
        parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        env = child_env(python_helper)
        if token:
            env["RECONCILE_TOKEN"] = token
        env.update(extra_env or {})
        m = measure(argv, self.work, out, err, env)
        step = Step(key, label, list(argv), m.wall_s, m.rss_kib, m.exit_code, str(out), str(err), m.cpu_s, parent)
        if say:
            self.progress(f"{label}: {m.wall_s:.2f} s (CPU {m.cpu_s:.2f} s), {step.rss_mib:.0f} MiB, "
                          f"exit {m.exit_code}")
        if m.exit_code != expect_exit:
            tail = err.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise BenchmarkError(f"{label}: exit {m.exit_code}, expected {expect_exit}\n  $ {' '.join(argv)}\n{tail}")
        kept = self.report.steps.get(key)
        if kept is None or step.wall_s < kept.wall_s:
            self.report.steps[key] = kept = step
        return kept

    def best_of(self, key: str, label: str, commands: dict[str, list[str]], n: int) -> None:
        """Each command n times, interleaved (paired: the same load for each); each one's fastest run is kept,
        under KEY_NAME."""
        self.progress(f"{label} ...")
        for _ in range(n):
            for name, argv in commands.items():
                self.run(f"{key}_{name}", f"start-up: {name} (best of {n})", argv, say=False)
        self.progress(f"{label}: " + ", ".join(f"{name} {self.report.steps[f'{key}_{name}'].wall_s:.3f} s"
                                               for name in commands))

    def python(self, module: str, *args: str) -> list[str]:
        return [sys.executable, "-m", module, *args]

    def rc(self, *args: str) -> list[str]:
        return [*self.reconcile, *args]

    def check_plan(self, step: Step, want: dict[str, Any]) -> dict[str, Any]:
        """The plan's summary (read by a helper process) must hold `want`."""
        p = subprocess.run(self.python("benchmarks.check", step.stdout), capture_output=True, text=True,
                           env=child_env(True), cwd=self.work)
        if p.returncode != 0:
            raise BenchmarkError(f"{step.label}: cannot read the plan {step.stdout}: {p.stderr[-1500:]}")
        got: dict[str, Any] = json.loads(p.stdout)
        seen = {**(got["summary"] or {}), **{f"action:{k}": v for k, v in got["actions"].items()},
                **{f"reason:{k}": v for k, v in got["reasons"].items()}, "users": got["users"],
                "diagnostics": got["diagnostics"]}
        wrong = {k: (seen.get(k, 0), v) for k, v in want.items() if seen.get(k, 0) != v}
        if wrong:
            detail = ", ".join(f"{k} = {a!r} (expected {b!r})" for k, (a, b) in wrong.items())
            raise BenchmarkError(f"{step.label}: the plan is not what the fixture should give: {detail}")
        return got


def _copy_manifests(fixture: Path, moves: list[dict[str, Any]], into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for m in moves:
        shutil.copyfile(fixture / m["file"], into / Path(m["file"]).name)


def _write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def run_benchmark(config: Config, work: Path, targets: Targets = Targets(),  # noqa: B008
                  progress: Progress = _stderr) -> Report:
    """Build the fixtures in `work` (an empty directory) and measure every step; raises BenchmarkError."""
    b = Bench(config, work, progress)
    b.report.code = code_info()
    b.report.load["start"] = _load()
    commit = b.report.code["commit"]
    progress(f"reconciler {b.report.code['source']}"
             + (f" at {commit[:12]}{' (dirty)' if b.report.code['dirty'] else ''}" if commit else ""))
    if b.report.load["start"][0] > (os.cpu_count() or 1):
        progress(f"warning: load average {b.report.load['start'][0]} on {os.cpu_count()} CPUs: "
                 "other work competes with the benchmark; times will be noisy")
    c = config
    fixture = work / "fixture"
    if os.access(b.report.code["source"], os.W_OK):  # an installed, read-only package has its bytecode
        b.run("compile", "setup: byte-compile the reconciler package (as an install does)",
              b.python("compileall", "-q", b.report.code["source"]))
    b.run("generate", f"setup: generate the fixture ({c.shape} shape, {c.customers} x {c.users_per} users + whale "
                      f"{c.whale}, {c.moves} moves)",
          b.python("benchmarks.generate", str(fixture), "--customers", str(c.customers), "--users-per",
                   str(c.users_per), "--moves", str(c.moves), "--whale", str(c.whale), "--resellers",
                   str(c.resellers), "--shape", c.shape), python_helper=True)
    desc = json.loads((fixture / "fixture.json").read_text(encoding="utf-8"))
    batch: list[dict[str, Any]] = desc["moves"]
    batch_users = sum(m["users"] for m in batch)
    if c.startup_runs:
        _startup_steps(b, fixture / batch[0]["file"])
    url = f"sqlite:///{work / 'platform.db'}"
    where = ["--platform", url, "--state", str(work / "state.json")]

    b.run("init", f"platform init ({desc['users']:,} users, JSON seed)",
          b.rc("platform", "init", "--seed", str(fixture / "platform.json"), "--platform", url))

    db = str(work / "platform.db")
    floor_batch = b.python("benchmarks.floor", db, str(_write_json(work / "floor-batch.json",
                                                                   [m["customer"] for m in batch])),
                           str(work / "floor-batch.out.json"))
    moves_dir = str(fixture / "moves")
    half = batch[:c.half]
    _copy_manifests(fixture, half, work / "moves-half")
    for _ in range(c.runs):  # floor and plan in turn: the same load for both; the fastest of each is kept
        b.run("floor_batch", f"floor: batch ({len(batch):,} customers, {batch_users:,} users)", floor_batch,
              python_helper=True)
        step = b.run("plan_batch", f"plan batch ({len(batch):,} moves, {batch_users:,} users)",
                     b.rc("plan", moves_dir, "--format", "json", *where))
        b.check_plan(step, {"moves": len(batch), "invalid": 0, "errors": 0, "warnings": 0})
        step = b.run("plan_half", f"plan half batch ({len(half):,} moves, {sum(m['users'] for m in half):,} users)",
                     b.rc("plan", str(work / "moves-half"), "--format", "json", *where))
        b.check_plan(step, {"moves": len(half), "invalid": 0, "errors": 0})

    if desc["whale"]:
        floor_whale = b.python("benchmarks.floor", db, str(_write_json(work / "floor-whale.json",
                                                                       [desc["whale"]["customer"]])),
                               str(work / "floor-whale.out.json"))
        for _ in range(c.runs):
            b.run("floor_whale", f"floor: whale ({c.whale:,} users)", floor_whale, python_helper=True)
            step = b.run("plan_whale", f"plan whale (1 move, {c.whale:,} users)",
                         b.rc("plan", str(fixture / "whale"), "--format", "json", *where))
            b.check_plan(step, {"moves": 1, "invalid": 0, "errors": 0, "warnings": 0})

    b.run("apply", f"apply batch ({len(batch):,} moves, --auto-approve)",
          b.rc("apply", moves_dir, "--auto-approve", *where))
    for _ in range(c.runs):
        b.run("floor_batch", f"floor: batch ({len(batch):,} customers, {batch_users:,} users)", floor_batch,
              python_helper=True)
        step = b.run("replan", f"re-plan after apply ({len(batch):,} noop)",
                     b.rc("plan", moves_dir, "--format", "json", *where))
        b.check_plan(step, {"moves": 0, "noop": len(batch), "reason:applied": len(batch), "errors": 0,
                            "warnings": 0})

    if c.applied:
        _applied_steps(b, c)
    if c.http:
        _http_steps(b, c, fixture)
    if c.pg:
        _pg_steps(b, c, fixture)
    b.report.load["end"] = _load()
    if b.report.code.get("commit") and code_info() != b.report.code:
        progress("warning: the reconciler source changed during the run (commit or working tree)")
        b.report.code["changed_during_run"] = True
    evaluate(b.report, targets)
    return b.report


def yamllint_command() -> list[str] | None:
    """yamllint next to sys.executable, else on PATH; None when it is not installed (the step is skipped)."""
    here = Path(sys.executable).parent / "yamllint"
    found = str(here) if here.exists() else shutil.which("yamllint")
    return [found] if found else None


def _startup_steps(b: Bench, manifest: Path) -> None:
    """What a pre-commit hook feels: validate of one manifest next to yamllint of it, and --version."""
    yamllint = yamllint_command()
    commands = {"reconcile validate": b.rc("validate", str(manifest))}  # the names label the table's rows
    if yamllint is None:
        b.progress("yamllint is not installed: validate is timed without its reference (pip install yamllint)")
    else:
        commands = {"yamllint": [*yamllint, str(manifest)], **commands}
    commands["reconcile --version"] = b.rc("--version")
    b.best_of("startup", "start-up: validate one manifest (vs yamllint) and --version", commands, b.config.startup_runs)


def _applied_steps(b: Bench, c: Config) -> None:
    """A second platform: `applied` moves of 1-user customers already applied, then `pending` more."""
    total = c.applied + c.pending
    root = b.work / "applied"
    fixture = root / "fixture"
    b.run("applied_generate", f"setup: generate {total:,} moves of 1-user customers",
          b.python("benchmarks.generate", str(fixture), "--customers", str(total), "--users-per", "1",
                   "--moves", str(total), "--whale", "0", "--resellers", str(c.resellers)), python_helper=True)
    desc = json.loads((fixture / "fixture.json").read_text(encoding="utf-8"))
    moves: list[dict[str, Any]] = desc["moves"]
    url = f"sqlite:///{root / 'platform.db'}"
    where = ["--platform", url, "--state", str(root / "state.json")]
    tree = root / "tree"
    _copy_manifests(fixture, moves[:c.applied], tree)
    b.run("applied_init", f"setup: platform init ({desc['users']:,} users)",
          b.rc("platform", "init", "--seed", str(fixture / "platform.json"), "--platform", url))
    b.run("applied_apply", f"setup: apply {c.applied:,} moves", b.rc("apply", str(tree), "--auto-approve", *where))
    _copy_manifests(fixture, moves[c.applied:], tree)
    step = b.run("applied_plan", f"plan {c.applied:,} applied + {c.pending} pending manifests",
                 b.rc("plan", str(tree), "--format", "json", *where))
    b.check_plan(step, {"moves": c.pending, "noop": c.applied, "reason:applied": c.applied, "errors": 0})


class Served:
    """`reconcile platform serve` on a free loopback port, for the steps over HTTP (and benchmarks.plan_http):
    its output in `logs`/NAME-server.{out,err}; stopped with SIGTERM, then killed."""

    TOKEN = "bench-write-token"

    def __init__(self, reconcile: Sequence[str], url: str, logs: Path, name: str, *extra: str) -> None:
        self.out, self.err = logs / f"{name}-server.out", logs / f"{name}-server.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen([*reconcile, "platform", "serve", "--platform", url, "--listen",
                                          "127.0.0.1:0", *extra], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         env={**child_env(False), "RECONCILE_SERVER_TOKEN": self.TOKEN})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = READY.search(self.out.read_text("utf-8", "replace"))
            if m:
                self.url = m.group(1)
                return
            time.sleep(0.05)
        self.stop()
        raise BenchmarkError(f"`reconcile platform serve` did not start (is reconciler[server] installed?): "
                             f"{self.err.read_text('utf-8', 'replace')[-1500:]}")

    def cpu_s(self) -> float:
        """The server's CPU time so far (user + system, from /proc; 0 where there is no /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def _http_steps(b: Bench, c: Config, fixture: Path) -> None:
    """Apply over HTTP: the batch with provisioning at once, then `async_moves` moves of `async_seconds` each."""
    root = b.work / "http"
    root.mkdir()
    url = f"sqlite:///{root / 'platform.db'}"
    b.run("http_init", "setup: platform init for HTTP", b.rc("platform", "init", "--seed",
                                                           str(fixture / "platform.json"), "--platform", url))
    served = Served(b.reconcile, url, b.logs, "http")
    try:
        b.run("http_apply", f"apply batch over HTTP ({c.moves:,} moves, --parallelism 4)",
              b.rc("apply", str(fixture / "moves"), "--auto-approve", "--platform", served.url, "--state",
                   str(root / "state.json")), token=Served.TOKEN)
    finally:
        served.stop()

    n, secs, par = c.async_moves, c.async_seconds, c.async_parallelism
    root = b.work / "async"
    small = root / "fixture"
    b.run("async_generate", f"setup: generate {n} moves of 1-user customers",
          b.python("benchmarks.generate", str(small), "--customers", str(n), "--users-per", "1", "--moves", str(n),
                   "--whale", "0", "--resellers", str(c.resellers)), python_helper=True)
    url = f"sqlite:///{root / 'platform.db'}"
    b.run("async_init", "setup: platform init", b.rc("platform", "init", "--seed", str(small / "platform.json"),
                                                     "--platform", url))
    served = Served(b.reconcile, url, b.logs, "async", "--provision-seconds", str(secs), "--workers", str(max(16, par)))
    try:
        b.run("async_apply", f"apply {n} moves over HTTP, {secs:g} s each, --parallelism {par}",
              b.rc("apply", str(small / "moves"), "--auto-approve", "--parallelism", str(par), "--platform",
                   served.url, "--state", str(root / "state.json")), token=Served.TOKEN)
    finally:
        served.stop()


def _pg_steps(b: Bench, c: Config, fixture: Path) -> None:
    """The batch apply with the state in PostgreSQL (fsync off, as in the tests) against the same apply with a
    state file, run in turn on copies of one fresh platform, `runs` times each (the fastest kept): a ratio of
    two steps measured minutes apart swings with the machine's load."""
    root = b.work / "pg"
    root.mkdir()
    pristine = root / "pristine.db"
    b.run("pg_init", "setup: platform init for the PostgreSQL state",
          b.rc("platform", "init", "--seed", str(fixture / "platform.json"), "--platform", f"sqlite:///{pristine}"))
    cluster = REPO / ".ci" / "pg-cluster"
    # Its own directory under the system temp: the server runs as `postgres`, which cannot enter ours (0700).
    where = Path(tempfile.mkdtemp(prefix="reconcile-bench-pg-"))
    started = subprocess.run([str(cluster), "start", str(where)], capture_output=True, text=True)
    if started.returncode != 0:
        shutil.rmtree(where, ignore_errors=True)
        raise BenchmarkError(f"cannot start a PostgreSQL cluster: {started.stderr[-1500:]}")
    try:
        state_url = started.stdout.strip().splitlines()[-1]
        password = (where / "password").read_text().strip()
        moves = str(fixture / "moves")
        for i in range(c.runs):
            platform = root / f"platform-{i}.db"
            shutil.copyfile(pristine, platform)
            b.run("pg_file_apply", f"apply batch ({c.moves:,} moves) with a state file, beside PostgreSQL",
                  b.rc("apply", moves, "--auto-approve", "--platform", f"sqlite:///{platform}", "--state",
                       str(root / f"state-{i}.json")))
            shutil.copyfile(pristine, platform)
            b.run("pg_apply", f"apply batch ({c.moves:,} moves) with the state in PostgreSQL",
                  b.rc("apply", moves, "--auto-approve", "--platform", f"sqlite:///{platform}", "--state",
                       f"{state_url}{'&' if '?' in state_url else '?'}name=bench-{i}"),
                  extra_env={"PGPASSWORD": password})
            platform.unlink()
    finally:
        subprocess.run([str(cluster), "stop", str(where)], capture_output=True, text=True)


# -- targets --------------------------------------------------------------------------------
def _within(value: float, limit: float | None) -> bool | None:
    return None if limit is None else value <= limit


def _all(*checks: bool | None) -> bool | None:
    real = [x for x in checks if x is not None]
    return all(real) if real else None


def _fmt(limit: float | None, unit: str) -> str:
    return "" if limit is None else f"≤ {limit:g}{unit}"


def evaluate(report: Report, t: Targets) -> None:
    """Turn the measured steps into the table's rows, each with its target and verdict."""
    s = report.steps
    rows = report.rows
    rows.clear()

    def row(key: str, target: str = "", ok: bool | None = None, ratio: str = "", note: str = "") -> None:
        if key in s:
            rows.append(Row(s[key].label, s[key].wall_s, s[key].rss_mib, s[key].cpu_s, ratio, target, ok, note))

    def vs(key: str, floor: str) -> tuple[float, str]:
        r = s[key].wall_s / s[floor].wall_s
        return r, f"{r:.2f}× floor"

    if "startup_reconcile validate" in s:
        if "startup_yamllint" in s:
            row("startup_yamllint", note="reference")
            r = s["startup_reconcile validate"].wall_s / s["startup_yamllint"].wall_s
            row("startup_reconcile validate", _fmt(t.validate_yamllint, "× yamllint"), _within(r, t.validate_yamllint),
                f"{r:.2f}× yamllint")
        else:
            row("startup_reconcile validate", note="no yamllint")
        row("startup_reconcile --version", _fmt(t.version_s, " s"),
            _within(s["startup_reconcile --version"].wall_s, t.version_s))
    row("init", " and ".join(x for x in (_fmt(t.init_s, " s"), _fmt(t.init_rss_mib, " MiB")) if x),
        _all(_within(s["init"].wall_s, t.init_s), _within(s["init"].rss_mib, t.init_rss_mib)))
    row("floor_batch", note="floor")
    row("floor_whale", note="floor")
    r, txt = vs("plan_batch", "floor_batch")
    row("plan_batch", " and ".join(x for x in (_fmt(t.plan_floor, "× floor"), _fmt(t.plan_s, " s")) if x),
        _all(_within(r, t.plan_floor), _within(s["plan_batch"].wall_s, t.plan_s)), txt)
    row("plan_half", ratio=vs("plan_half", "floor_batch")[1])
    half_ratio = s["plan_batch"].wall_s / s["plan_half"].wall_s
    rows.append(Row("plan full / half batch (linear in users touched)", ratio=f"{half_ratio:.2f}× half",
                    target=_fmt(t.half_ratio, "×"), ok=_within(half_ratio, t.half_ratio)))
    if "plan_whale" in s:
        r, txt = vs("plan_whale", "floor_whale")
        row("plan_whale", _fmt(t.whale_floor, "× floor"), _within(r, t.whale_floor), txt)
    row("apply", _fmt(t.apply_s, " s"), _within(s["apply"].wall_s, t.apply_s))
    r, txt = vs("replan", "floor_batch")
    row("replan", _fmt(t.replan_floor, "× floor (batch)"), _within(r, t.replan_floor), txt)
    row("applied_init", note="setup")
    row("applied_apply", note="setup")
    if "applied_plan" in s:
        row("applied_plan", _fmt(t.applied_plan_s, " s"), _within(s["applied_plan"].wall_s, t.applied_plan_s))
    if "http_apply" in s:
        row("http_apply", _fmt(t.http_apply_s, " s"), _within(s["http_apply"].wall_s, t.http_apply_s),
            f"{s['http_apply'].wall_s / s['apply'].wall_s:.2f}× embedded")
    if "async_apply" in s:
        c = report.config
        ideal = c.async_moves * c.async_seconds / c.async_parallelism
        limit = None if t.async_slack is None else t.async_slack * ideal + 5
        wall = s["async_apply"].wall_s
        row("async_apply", _fmt(limit, " s"), _within(wall, limit),
            f"{wall / ideal:.2f}× ideal {ideal:.2f} s; +{(wall - ideal) / c.async_moves * 1000:.0f} ms/move")
    if "pg_apply" in s:
        row("pg_file_apply", note="reference")
        r = s["pg_apply"].wall_s / s["pg_file_apply"].wall_s
        row("pg_apply", _fmt(t.pg_apply_ratio, "× the state file"), _within(r, t.pg_apply_ratio), f"{r:.2f}× file")
    plans = [s[k] for k in ("plan_batch", "plan_half", "plan_whale", "replan", "applied_plan") if k in s]
    worst = max(plans, key=lambda x: x.rss_kib)
    rows.append(Row(f"peak RSS of any plan ({worst.label})", rss_mib=worst.rss_mib,
                    target=_fmt(t.plan_rss_mib, " MiB"), ok=_within(worst.rss_mib, t.plan_rss_mib)))


def markdown(report: Report) -> str:
    lines = ["| step | wall | peak RSS | ratio | target | result | CPU |", "|---|---:|---:|---:|---|---|---:|"]
    for r in report.rows:
        wall = "" if r.wall_s is None else f"{r.wall_s:.2f} s"
        rss = "" if r.rss_mib is None else f"{r.rss_mib:.0f} MiB"
        cpu = "" if r.cpu_s is None else f"{r.cpu_s:.2f} s"
        lines.append(f"| {r.step} | {wall} | {rss} | {r.ratio} | {r.target} | {r.result} | {cpu} |")
    return "\n".join(lines) + "\n"


# -- command line ---------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    d = Config()
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=SHAPES, default=d.shape,
                    help="the fixture: default (50 users each, mostly one SAL) or varied (10-100 users, every SAL, "
                         "many overrides)")
    ap.add_argument("--customers", type=int, default=d.customers, help=f"customers (default {d.customers})")
    ap.add_argument("--users-per", type=int, default=d.users_per, help=f"users per customer (default {d.users_per})")
    ap.add_argument("--moves", type=int, default=d.moves, help=f"moves in the batch (default {d.moves})")
    ap.add_argument("--whale", type=int, default=d.whale, help=f"users of the whale, 0 for none (default {d.whale})")
    ap.add_argument("--applied", type=int, default=d.applied,
                    help=f"already applied 1-user moves for the last step, 0 to skip it (default {d.applied})")
    ap.add_argument("--runs", type=int, default=d.runs, help=f"runs of each floor, plan and re-plan, the fastest "
                                                             f"kept (default {d.runs})")
    ap.add_argument("--no-http", action="store_true", help="skip the apply steps over HTTP (no server extra)")
    ap.add_argument("--pg", action="store_true", help="also apply the batch with the state in PostgreSQL (needs the "
                                                      "postgresql server binaries; a throwaway cluster)")
    ap.add_argument("--no-startup", action="store_true", help="skip the start-up steps (validate vs yamllint, "
                                                             "--version)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    ap.add_argument("--keep", metavar="DIR", help="build in DIR (new or empty) and keep it; default: a temporary "
                                                  "directory, removed afterwards")
    ap.add_argument("--no-fail", action="store_true", help="exit 0 even when a target fails")
    a = ap.parse_args(argv)
    config = Config(customers=a.customers, users_per=a.users_per, moves=a.moves, whale=a.whale, applied=a.applied,
                    http=not a.no_http, pg=a.pg, startup_runs=0 if a.no_startup else STARTUP_RUNS,
                    shape=a.shape, runs=a.runs)
    try:
        config.check()
    except ValueError as e:
        ap.error(str(e))
    if config.moves < 2 or config.applied < 0 or config.runs < 1:
        ap.error("--moves must be >= 2 (half the batch is planned too), --applied >= 0 and --runs >= 1")
    if a.keep:
        work = Path(a.keep).resolve()
        if work.exists() and any(work.iterdir()):
            ap.error(f"--keep {a.keep}: the directory is not empty")
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="reconcile-bench-"))
    try:
        report = run_benchmark(config, work)
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            _stderr(f"kept {work}")
    sys.stdout.write(markdown(report))
    if a.json:
        Path(a.json).write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    if not report.ok:
        failed = ", ".join(r.step for r in report.rows if r.ok is False)
        _stderr(f"FAILED targets: {failed}")
        return 0 if a.no_fail else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
