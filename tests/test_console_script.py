"""The installed `reconcile` console script and `python -m reconciler`, as real processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import MOVES, SECRETS, SEED, subprocess_env

from reconciler import __version__

RECONCILE = Path(sys.executable).with_name("reconcile")


def test_installed_console_script_init_and_plan(tmp_path: Path) -> None:
    assert RECONCILE.exists(), f"install the project (pip install -e .): no {RECONCILE}"
    shutil.copytree(MOVES, tmp_path / "moves")
    url = f"sqlite:///{tmp_path}/platform.db"
    env = subprocess_env(RECONCILE_PLATFORM=url, RECONCILE_STATE=str(tmp_path / "state.json"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(RECONCILE), *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=120)

    init = run("platform", "init", "--seed", str(SEED))
    assert init.returncode == 0, init.stderr
    assert init.stdout == f"Created {url}: 2 locations, 2 services, 8 customers, 7 users, 0 requests\n"

    plan = run("plan", "--detailed-exitcode", "--format", "json", "moves")
    assert plan.returncode == 2, plan.stderr
    assert plan.stderr == ""
    doc = json.loads(plan.stdout)
    assert doc["summary"] == {"moves": 2, "noop": 0, "invalid": 0, "users_changed": 4, "requests": 2,
                              "errors": 0, "warnings": 0}
    assert [(m["name"], m["action"]) for m in doc["moves"]] == [("acme-to-northwind", "move"),
                                                                ("vault-to-woodgrove", "move")]
    assert not any(s in plan.stdout for s in SECRETS)
    assert not (tmp_path / "state.json").exists()


def test_python_dash_m_version(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "reconciler", "--version"], cwd=tmp_path, env=subprocess_env(),
                       capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout, p.stderr) == (0, f"reconcile, version {__version__}\n", "")
