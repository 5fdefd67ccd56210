"""A third-party provider, from outside: examples/providers/acmepanel installed into a fresh environment.

The boundary holds when a package that is not reconciler, found only through its entry point in group
`reconciler.platforms`, plans against a platform. A fresh venv gets the project (from this tree) and the
example with `pip install --no-deps --no-index`; the dependencies come from the test environment's
site-packages through a .pth file, so nothing is downloaded. Then `reconcile platform providers` lists
the scheme, and a plan runs through `acmepanel://` against `reconcile platform serve` with the read token.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
from conftest import APPLY_MOVES, APPLY_SEED, subprocess_env
from peers import READ_TOKEN, Served, http_available

from reconciler.platforms.sqlite import init

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "providers" / "acmepanel"
PIP_SECONDS = 300


def run(argv: list[str], cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Run argv away from the repository (by default in the temp directory): `python -c` would import ./reconciler."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=PIP_SECONDS, stdin=subprocess.DEVNULL,
                          cwd=cwd or tempfile.gettempdir(),
                          env=subprocess_env(PIP_DISABLE_PIP_VERSION_CHECK="1", **env))


def fresh_venv(root: Path) -> Path:
    """A new venv holding the project and the example, as wheels built from copies (the tree stays clean)."""
    src, wheels = root / "src", root / "wheels"
    for part in ("reconciler", "schemas"):
        shutil.copytree(REPO / part, src / "project" / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / part, src / "project" / part)
    shutil.copytree(EXAMPLE, src / "acmepanel", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    # Built by the test environment (setuptools of the test extra): offline, no build isolation.
    r = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index", "--no-build-isolation",
             "-w", str(wheels), str(src / "project"), str(src / "acmepanel")])
    assert r.returncode == 0, r.stdout + r.stderr
    venv = root / "venv"
    r = run([sys.executable, "-m", "venv", str(venv)])
    assert r.returncode == 0, r.stderr
    py = venv / "bin" / "python"
    site = run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    # The test environment's packages (pydantic, httpx, ...) after the venv's own: no index needed.
    Path(site, "zz-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    # --ignore-installed: the test environment (on the path above) may hold reconciler already, as in CI
    r = run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed",
             *map(str, wheels.glob("*.whl"))])
    assert r.returncode == 0, r.stdout + r.stderr
    return venv / "bin"


@pytest.mark.slow
def test_a_provider_package_plans_through_its_own_scheme(tmp_path: Path) -> None:
    why = http_available()
    if why:
        pytest.skip(why)
    bin_dir = fresh_venv(tmp_path)
    reconcile = str(bin_dir / "reconcile")
    where = run([str(bin_dir / "python"), "-c", "import reconciler, reconciler_acmepanel as a; "
                 "print(reconciler.__file__); print(a.__file__)"])
    assert str(tmp_path / "venv") in where.stdout and str(REPO / "reconciler") not in where.stdout, where

    listed = run([reconcile, "platform", "providers"])
    assert listed.returncode == 0, listed.stderr
    row = next(line.split() for line in listed.stdout.splitlines() if line.split()[:1] in (["acmepanel"],
                                                                                          ["acmepanel://"]))
    assert row[1:] == ["reconciler-acmepanel", "0.1.0"]

    url = f"sqlite:///{tmp_path / 'platform.db'}"
    init(url, str(APPLY_SEED))
    work = tmp_path / "work"
    shutil.copytree(APPLY_MOVES, work / "moves")
    with Served(url, tmp_path / "server") as served:
        panel = served.url.replace("http://", "acmepanel://")
        plan = subprocess.run([reconcile, "plan", "moves", "--format", "json", "--platform", panel, "--state",
                               str(work / "state.json")], cwd=work, capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL, env=subprocess_env(RECONCILE_TOKEN=READ_TOKEN))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    doc = json.loads(plan.stdout)
    assert doc["platform"]["url"] == panel  # the plan names the platform by the plug-in's own URL
    assert doc["summary"]["invalid"] == 0
    assert sorted(m["name"] for m in doc["moves"]) == ["acme-to-northwind", "globex-to-northwind",
                                                       "hooli-to-northwind"]
    assert {m["action"] for m in doc["moves"]} == {"move"}
    assert READ_TOKEN not in plan.stdout + plan.stderr

    unknown = run([reconcile, "plan", str(work / "moves"), "--platform", "nopanel://x",
                   "--state", str(work / "s.json")])
    assert unknown.returncode != 0 and "acmepanel://" in unknown.stderr  # the error lists what is installed
