"""manifests.plainly_valid: the hand-written acceptance that lets `validate` skip pydantic and jsonschema.

It may only ever accept what both the pydantic models and schemas/move.schema.json accept; anything else
takes the full path (same checks, same messages). Property-tested on mutations of a valid manifest, and
checked on every manifest shipped in the repository."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler import schema
from reconciler.manifest_model import Manifest, ValidationError
from reconciler.manifests import load, plainly_valid, read_docs

REPO = Path(__file__).resolve().parents[1]

BASE: dict[str, Any] = {
    "apiVersion": "reconciler/v1", "kind": "CustomerMove",
    "metadata": {"name": "acme-to-northwind", "ticket": "CHG-1", "description": "why"},
    "spec": {"customer": "acme", "toReseller": "northwind", "location": "eu", "allowLarge": False,
             "services": {"mail": {"plan": "mail-pro", "sals": {"eu-1": "eu-2"},
                                   "properties": {"quota": 5, "ratio": 0.5, "on": True, "label": "x", "gone": None}}}},
}


def both_accept(data: Any) -> bool:
    try:
        Manifest.model_validate(data)
    except ValidationError:
        return False
    return bool(schema.validator("move").is_valid(data))


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, (*prefix, k))
    return out


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "a", "A.b_c@d-e", "x\n", "-x", "a" * 63, "a" * 64, "b" * 128, "c" * 129, "é", "a b",
                     "reconciler/v1", "CustomerMove", "UPPER", "a-", "0"]),
    st.text(max_size=12),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=2),
                                                       st.dictionaries(st.one_of(st.text(max_size=5), st.integers()),
                                                                       inner, max_size=2)), max_leaves=4)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_what_it_accepts_both_pydantic_and_the_schema_accept(data: st.DataObject) -> None:
    doc = copy.deepcopy(BASE)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        where = data.draw(st.sampled_from(paths(doc)))
        action = data.draw(st.sampled_from(["set", "delete", "add"]))
        if not where:
            doc = data.draw(values)
            continue
        parent = doc
        for k in where[:-1]:
            parent = parent[k]
        if action == "delete":
            del parent[where[-1]]
        elif action == "add" and isinstance(parent[where[-1]], dict):
            parent[where[-1]][data.draw(st.one_of(st.text(max_size=6), st.integers(), st.sampled_from(
                ["plan", "sals", "properties", "ticket", "allowLarge", "services"])))] = data.draw(values)
        else:
            parent[where[-1]] = data.draw(values)
        if not isinstance(doc, dict):
            break
    if plainly_valid(doc):
        assert both_accept(doc), doc


def test_the_base_manifest_and_its_variants_take_the_fast_path() -> None:
    assert plainly_valid(BASE) and both_accept(BASE)
    minimal = {"apiVersion": "reconciler/v1", "kind": "CustomerMove", "metadata": {"name": "m"},
               "spec": {"customer": "c", "toReseller": "r", "location": "l"}}
    assert plainly_valid(minimal)
    for bad in ({**minimal, "kind": "Other"}, {**minimal, "metadata": {"name": "m", "ticket": None}},
                {**minimal, "spec": {**minimal["spec"], "services": {"s": {"plan": None}}}},
                {**minimal, "spec": {**minimal["spec"], "services": {"s": {"properties": {"p": math.nan}}}}}):
        assert not plainly_valid(bad)


SHIPPED = sorted({*REPO.glob("examples/**/*.yaml"), *REPO.glob("tests/cases/**/moves/**/*.yaml"),
                  *REPO.glob("tests/fixtures/moves/*.yaml")})


@pytest.mark.parametrize("file", SHIPPED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_manifest_is_judged_as_the_models_judge_it(file: Path) -> None:
    docs, _ = read_docs(str(file))
    for doc in docs:
        if isinstance(doc.data, dict) and doc.data.get("kind") == "CustomerMove":
            assert plainly_valid(doc.data) == both_accept(doc.data), (file, doc.index)


def test_a_fast_path_move_builds_its_manifest_when_asked(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text((REPO / "tests/fixtures/moves/acme-to-northwind.yaml").read_text(encoding="utf-8"))
    (move,) = load([str(f)]).moves
    assert move.manifest.metadata.name == move.name and move.spec.customer == move.customer
    assert move.allow_large is move.manifest.spec.allow_large
