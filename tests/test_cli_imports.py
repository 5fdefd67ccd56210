"""Start-up: `validate` (a pre-commit hook), `--help` and `--version` import only what they need.

Each check runs the command in a fresh interpreter and then reads sys.modules: what was imported, not how
long it took (no wall clock in the suite; benchmarks/run.py times start-up against yamllint)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "moves" / "01-blueyonder-to-adatum.yaml"

# Packages no offline validation of a valid manifest needs, and the heavy parts of reconciler itself.
HEAVY = ("rich", "pydantic", "pydantic_core", "jsonschema", "referencing", "httpx", "httpcore", "stamina",
         "psycopg", "deepdiff", "sqlite3", "starlette", "uvicorn", "anyio", "tomllib", "zoneinfo")
HEAVY_OWN = ("reconciler.app", "reconciler.applier", "reconciler.planner", "reconciler.platforms",
             "reconciler.state", "reconciler.results", "reconciler.policy", "reconciler.rules",
             "reconciler.config", "reconciler.seed", "reconciler.manifest_model", "reconciler.render.text",
             "reconciler.render.json")

PROBE = """
import json, sys
from reconciler.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
sys.stdout.flush()
print("\\n@@" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def imported(*args: str) -> tuple[object, set[str]]:
    p = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=REPO,
                       timeout=120, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})
    tail = p.stdout.rsplit("\n@@", 1)
    assert len(tail) == 2, p.stdout + p.stderr
    got = json.loads(tail[1])
    return got["code"], set(got["modules"])


def heavy(modules: set[str], also: tuple[str, ...] = ()) -> list[str]:
    top = HEAVY + also
    return sorted(m for m in modules if m.split(".")[0] in top
                  or any(m == own or m.startswith(own + ".") for own in HEAVY_OWN))


def test_validate_of_a_valid_manifest_imports_no_platform_planner_rich_or_models() -> None:
    code, modules = imported("validate", str(EXAMPLE))
    assert code == 0
    assert heavy(modules) == []
    assert "yaml" in modules  # it did parse the manifest


@pytest.mark.parametrize("fmt", ["json", "github"])
def test_validate_formats_stay_light(fmt: str) -> None:
    code, modules = imported("validate", "--format", fmt, str(EXAMPLE))
    assert code == 0
    assert heavy(modules) == []


def test_an_invalid_manifest_still_gets_the_schema_messages(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text(encoding="utf-8").replace("kind: CustomerMove", "kind: CustomerMoov"))
    code, modules = imported("validate", str(bad))
    assert code == 1
    assert "jsonschema" in modules  # the full path, for path-addressed messages
    assert [m for m in heavy(modules) if m.startswith("reconciler.")] == ["reconciler.manifest_model"]


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["plan", "--help"], ["platform", "--help"]])
def test_help_and_version_import_almost_nothing(args: list[str]) -> None:
    code, modules = imported(*args)
    assert code == 0
    assert heavy(modules, ("yaml",)) == []
    assert not {m for m in modules if m.startswith("reconciler.")} - {
        "reconciler.cli", "reconciler.errors", "reconciler.render"}


def test_plan_as_json_on_the_embedded_platform_imports_what_planning_needs_only(tmp_path: Path) -> None:
    """Issue 14: no seed models (init only), no rich (the text renderer), no network or PostgreSQL stack."""
    db = tmp_path / "p.db"
    seed = REPO / "examples" / "platform.yaml"
    init = subprocess.run([sys.executable, "-c", "from reconciler.cli import main; main()", "platform", "init",
                           "--seed", str(seed), "--platform", f"sqlite:///{db}"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert init.returncode == 0, init.stderr
    code, modules = imported("plan", str(EXAMPLE), "--format", "json", "--platform", f"sqlite:///{db}",
                             "--state", str(tmp_path / "state.json"))
    assert code == 0
    assert "reconciler.planner" in modules and "reconciler.render.json" in modules
    assert [m for m in heavy(modules) if m.split(".")[0] in ("rich", "httpx", "httpcore", "stamina", "psycopg",
                                                             "starlette", "uvicorn", "jsonschema")] == []
    assert {"reconciler.seed", "reconciler.render.text", "reconciler.render.markdown"}.isdisjoint(modules)


def test_a_no_op_re_plan_builds_no_manifest_models(tmp_path: Path) -> None:
    """Issue 14: a manifest the state records as applied is never parsed, so its pydantic models are not built."""
    db, state = tmp_path / "p.db", tmp_path / "state.json"
    where = ["--platform", f"sqlite:///{db}", "--state", str(state)]
    for args in (["platform", "init", "--seed", str(REPO / "examples" / "platform.yaml"), where[0], where[1]],
                 ["apply", str(EXAMPLE), "--auto-approve", *where]):
        ran = subprocess.run([sys.executable, "-c", "from reconciler.cli import main; main()", *args],
                             capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert ran.returncode == 0, ran.stderr
    code, modules = imported("plan", str(EXAMPLE), "--format", "json", *where)
    assert code == 0
    assert "reconciler.planner" in modules and "reconciler.manifest_model" not in modules
