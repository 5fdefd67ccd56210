"""The JSON Schemas in schemas/: valid Draft 2020-12, shipped in the package, and true of what the code writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from reconciler.model import sha256_of

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
EXAMPLES = ROOT / "examples"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FILES = sorted(SCHEMAS.glob("*.schema.json"))


def schema(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text("utf-8"))
    return doc


def errors(name: str, instance: Any) -> list[str]:
    """Every problem of `instance` against schemas/NAME.schema.json, as `$.path: message` lines."""
    found = Draft202012Validator(schema(name)).iter_errors(instance)
    return sorted(f"{e.json_path}: {e.message}" for e in found)


def mutated(doc: dict[str, Any], change: Callable[[Any], object]) -> dict[str, Any]:
    """A deep copy of `doc` with `change` applied to it."""
    copy: dict[str, Any] = json.loads(json.dumps(doc))
    change(copy)
    return copy


def reconcile(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed `reconcile` command (beside this interpreter), else `python -m reconciler`."""
    script = Path(sys.executable).with_name("reconcile")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "reconciler"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILE_", "GITHUB_"))}
    return subprocess.run([*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


class Workspace:
    """An embedded platform seeded in tmp_path and a state file beside it."""

    def __init__(self, root: Path, seed: Path = EXAMPLES / "platform.yaml") -> None:
        self.root = root
        self.url = f"sqlite:///{root / 'platform.db'}"
        self.state = root / "state.json"
        done = self.run("platform", "init", "--seed", str(seed), platform=True, state=False)
        assert done.returncode == 0, done.stderr

    def run(self, *args: str, platform: bool = True, state: bool = True) -> subprocess.CompletedProcess[str]:
        opts = (["--platform", self.url] if platform else []) + (["--state", str(self.state)] if state else [])
        return reconcile(*args, *opts, cwd=self.root)


@dataclass
class Planned:
    """The examples planned once for the module (read-only tests share it)."""

    ws: Workspace
    moves: subprocess.CompletedProcess[str]  # plan examples/moves --format json
    invalid: subprocess.CompletedProcess[str]  # plan examples/invalid --format json
    saved: subprocess.CompletedProcess[str]  # plan examples/moves --out plan.json
    plan_file: Path


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Planned:
    ws = Workspace(tmp_path_factory.mktemp("planned"))
    out = ws.root / "plan.json"
    return Planned(ws, ws.run("plan", str(EXAMPLES / "moves"), "--format", "json"),
                   ws.run("plan", str(EXAMPLES / "invalid"), "--format", "json"),
                   ws.run("plan", str(EXAMPLES / "moves"), "--out", str(out)), out)


@dataclass
class Applied:
    """The examples applied from a saved plan, and planned again."""

    ws: Workspace
    apply: subprocess.CompletedProcess[str]
    replan: subprocess.CompletedProcess[str]  # plan examples/moves --format json
    resaved: subprocess.CompletedProcess[str]  # plan examples/moves --out replan.json
    replan_file: Path


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Applied:
    ws = Workspace(tmp_path_factory.mktemp("applied"))
    out = ws.root / "plan.json"
    saved = ws.run("plan", str(EXAMPLES / "moves"), "--out", str(out))
    assert saved.returncode == 0, saved.stderr
    again = ws.root / "replan.json"
    return Applied(ws, ws.run("apply", "--plan", str(out), "--auto-approve"),
                   ws.run("plan", str(EXAMPLES / "moves"), "--format", "json"),
                   ws.run("plan", str(EXAMPLES / "moves"), "--out", str(again)), again)


# -- the schemas themselves -------------------------------------------------------------------
def test_schemas_folder_has_the_four_formats() -> None:
    assert [p.name for p in SCHEMA_FILES] == ["move.schema.json", "plan.schema.json", "platform.schema.json",
                                              "state.schema.json"]


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_every_schema_is_a_valid_draft_2020_12_schema(path: Path) -> None:
    doc = json.loads(path.read_text("utf-8"))
    assert doc["$schema"] == DRAFT_2020_12
    assert doc["$id"].endswith("/" + path.name)
    Draft202012Validator.check_schema(doc)  # raises SchemaError with the offending keyword


def test_schema_ids_are_unique() -> None:
    ids = [json.loads(p.read_text("utf-8"))["$id"] for p in SCHEMA_FILES]
    assert len(set(ids)) == len(ids)


SHIPPED = """
import json, sys
from importlib.resources import files
pkg = files("reconciler.schemas")
print(json.dumps({n: (pkg / n).read_text("utf-8") if (pkg / n).is_file() else None for n in sys.argv[1:]}))
"""


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Each schema as the installed package ships it (importlib.resources, package reconciler.schemas).

    Read in a subprocess run outside the checkout: `python -m pytest` puts the checkout first on
    sys.path, and its reconciler/ has no schemas subpackage (setuptools maps schemas/ to it).
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", SHIPPED, *(p.name for p in SCHEMA_FILES)], env=env,
                          cwd=tmp_path_factory.mktemp("outside"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found: dict[str, str | None] = json.loads(done.stdout)
    return found


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_the_installed_package_ships_the_schema(path: Path, shipped: dict[str, str | None]) -> None:
    text = shipped[path.name]
    assert text is not None, f"reconciler.schemas does not ship {path.name}: see [tool.setuptools.package-data]"
    assert json.loads(text) == json.loads(path.read_text("utf-8"))


# -- examples against the input schemas --------------------------------------------------------
def test_example_platform_is_valid_against_platform_schema() -> None:
    doc = yaml.safe_load((EXAMPLES / "platform.yaml").read_text("utf-8"))
    assert errors("platform", doc) == []


EXAMPLE_MOVES = sorted((EXAMPLES / "moves").rglob("*.y*ml"))


def test_examples_moves_holds_six_manifests() -> None:
    assert len(EXAMPLE_MOVES) == 6


@pytest.mark.parametrize("path", EXAMPLE_MOVES, ids=lambda p: p.name)
def test_example_move_is_valid_against_move_schema(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text("utf-8")) if d is not None]
    assert docs, f"{path} holds no manifest"
    for doc in docs:
        assert errors("move", doc) == []


def test_example_schema_violation_fails_move_schema() -> None:
    """The move schema is not vacuous: examples/invalid/schema.yaml fails it."""
    doc = yaml.safe_load((EXAMPLES / "invalid" / "schema.yaml").read_text("utf-8"))
    assert errors("move", doc) != []


# -- plan JSON --------------------------------------------------------------------------------
def test_plan_json_of_the_examples_is_valid(planned: Planned) -> None:
    done = planned.moves
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert errors("plan", plan) == []
    assert plan["summary"]["moves"] == 6 and plan["applyable"] is True
    assert all(m["action"] == "move" and "manifest" not in m for m in plan["moves"])


def test_plan_json_of_the_invalid_examples_is_valid(planned: Planned) -> None:
    """Invalid moves and top-level diagnostics (yaml, schema, duplicate-name) fit the schema too."""
    done = planned.invalid
    assert done.returncode == 1
    plan = json.loads(done.stdout)
    assert errors("plan", plan) == []
    assert plan["applyable"] is False
    assert {m["action"] for m in plan["moves"]} == {"invalid"}
    assert {d["code"] for d in plan["diagnostics"]} == {"yaml", "schema", "duplicate-name"}


def test_plan_file_is_valid_and_carries_each_manifest(planned: Planned) -> None:
    assert planned.saved.returncode == 0, planned.saved.stderr
    plan = json.loads(planned.plan_file.read_text("utf-8"))
    assert errors("plan", plan) == []
    assert len(plan["moves"]) == 6
    for m in plan["moves"]:
        assert errors("move", m["manifest"]) == []
        assert sha256_of(m["manifest"]) == m["manifest_sha256"]


def test_plan_schema_rejects_what_the_code_never_writes(planned: Planned) -> None:
    good = json.loads(planned.plan_file.read_text("utf-8"))

    def broken(change: Callable[[Any], object]) -> dict[str, Any]:
        return mutated(good, change)

    assert errors("plan", broken(lambda d: d.update(extra=1))) == [
        "$: Additional properties are not allowed ('extra' was unexpected)"]
    assert errors("plan", broken(lambda d: d["moves"][0].update(action="moved"))) != []
    assert errors("plan", broken(lambda d: d["moves"][0].update(reason="applied"))) != []  # a move has no reason
    assert errors("plan", broken(lambda d: d["moves"][0].update(requests=[]))) != []  # a move has one request
    assert errors("plan", broken(lambda d: d["moves"][0]["manifest"].update(kind="Platform"))) != []
    assert errors("plan", broken(lambda d: d["summary"].pop("warnings"))) == [
        "$.summary: 'warnings' is a required property"]


# -- the state file ---------------------------------------------------------------------------
def test_state_after_apply_is_valid(applied: Applied) -> None:
    assert applied.apply.returncode == 0, applied.apply.stderr
    state = json.loads(applied.ws.state.read_text("utf-8"))
    assert errors("state", state) == []
    assert len(state["moves"]) == 6
    assert {r["status"] for r in state["moves"].values()} == {"applied"}


def test_plan_after_apply_is_valid_and_all_noop(applied: Applied) -> None:
    assert applied.replan.returncode == 0, applied.replan.stderr
    plan = json.loads(applied.replan.stdout)
    assert errors("plan", plan) == []
    assert [(m["action"], m["reason"]) for m in plan["moves"]] == [("noop", "applied")] * 6
    state = json.loads(applied.ws.state.read_text("utf-8"))
    assert plan["prior_state"] == {"lineage": state["lineage"], "serial": state["serial"]}


def test_plan_file_after_apply_is_valid_and_carries_each_manifest(applied: Applied) -> None:
    """Applied moves whose files are unchanged are planned without parsing them; the plan file still carries them."""
    assert applied.resaved.returncode == 0, applied.resaved.stderr
    plan = json.loads(applied.replan_file.read_text("utf-8"))
    assert errors("plan", plan) == []
    assert [m["reason"] for m in plan["moves"]] == ["applied"] * 6
    for m in plan["moves"]:
        assert errors("move", m["manifest"]) == []
        assert sha256_of(m["manifest"]) == m["manifest_sha256"]


def test_state_with_adopted_and_failed_moves_is_valid(tmp_path: Path) -> None:
    """An adopted record (no request) and a failed one (error message) fit the schema."""
    seed = yaml.safe_load((EXAMPLES / "platform.yaml").read_text("utf-8"))
    acme = next(c for c in seed["customers"] if c["id"] == "acme")
    acme["users"][0]["hold"] = "mailbox under legal hold"
    seed_file = tmp_path / "seed.yaml"
    seed_file.write_text(yaml.safe_dump(seed, sort_keys=False), "utf-8")
    ws = Workspace(tmp_path, seed_file)
    moves = tmp_path / "moves"
    moves.mkdir()
    (moves / "01-hooli-stays.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: CustomerMove\nmetadata: {name: hooli-stays}\n"
        "spec: {customer: hooli, toReseller: contoso, location: eu-west}\n", "utf-8")
    (moves / "02-acme.yaml").write_bytes((EXAMPLES / "moves" / "02-acme-to-northwind.yaml").read_bytes())
    done = ws.run("apply", str(moves), "--auto-approve")
    assert done.returncode == 1
    state = json.loads(ws.state.read_text("utf-8"))
    assert errors("state", state) == []
    adopted, failed = state["moves"]["hooli-stays"], state["moves"]["acme-to-northwind"]
    assert (adopted["status"], adopted["requests"]) == ("adopted", [])
    assert failed["status"] == "failed"
    assert failed["requests"][-1]["status"] == "Failed"
    assert "mailbox under legal hold" in failed["requests"][-1]["error"]


def test_state_schema_rejects_what_the_code_never_writes(applied: Applied) -> None:
    good = json.loads(applied.ws.state.read_text("utf-8"))
    assert good["moves"]["acme-to-northwind"]["requests"][0]["status"] == "Provisioned"

    def broken(change: Callable[[Any], object]) -> dict[str, Any]:
        return mutated(good, change)

    for key, bad in (("status", "done"), ("applied_serial", "4"), ("customer_fingerprint", "sha256:x")):
        doc = broken(lambda d, k=key, v=bad: d["moves"]["acme-to-northwind"].update({k: v}))
        assert errors("state", doc) != [], key
    assert errors("state", broken(lambda d: d.update(version=2))) == ["$.version: 1 was expected"]
    assert errors("state", broken(lambda d: d["moves"]["acme-to-northwind"]["requests"][0].update(extra=True))) == [
        "$.moves['acme-to-northwind'].requests[0]: Additional properties are not allowed ('extra' was unexpected)"]
