"""seed.stream: a seed read customer by customer must say exactly what the whole document says.

The streaming readers (the top-level members and each customer on its own) are compared with the same
seed checked in memory (json.loads or yamlsafe.load_all, then seed.check): the same error at the same
line and column, the same problems, the same document. And the plain-Python users check only ever accepts what the
pydantic model accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SEED
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_seed import BAD_SEED

from reconciler import seed as seeds
from reconciler.errors import PlatformError
from reconciler.yamlsafe import Doc, load_all

DATA: dict[str, Any] = yaml.safe_load(SEED.read_text(encoding="utf-8"))
TEXTS = [json.dumps(DATA), json.dumps(DATA, indent=1), json.dumps(DATA, indent="\t", separators=(" ,", " : ")),
         " \n" + json.dumps({"customers": DATA["customers"], **{k: v for k, v in DATA.items() if k != "customers"}})
         + "\r\n"]


def expected(f: str, text: str) -> tuple[str, Any]:
    """What the seed said when it was read whole."""
    try:
        data = json.loads(text, parse_int=seeds._json_int)
    except json.JSONDecodeError as e:
        return "error", f"{f}:{e.lineno}:{e.colno}: error[yaml]: not valid JSON: {e.msg}"
    except ValueError as e:
        return "error", f"{f}: error[yaml]: not valid JSON: {e}"
    if data is None:
        return "error", f"{f}: the seed is empty"
    problems = seeds.check(Doc(file=f, index=0, line=1, data=data))
    if problems:
        listed = "\n".join(p.format() for p in problems)
        return "error", f"{f}: the seed has {len(problems)} problem(s); nothing was created:\n{listed}"
    for key in ("locations", "services", "customers", "requests"):
        data[key] = data.get(key) or []
    return "ok", data


def got(f: str) -> tuple[str, Any]:
    try:
        return "ok", seeds.read(f).doc
    except PlatformError as e:
        return "error", e.message


@pytest.mark.parametrize("text", TEXTS)
def test_the_fixture_as_json_in_any_layout_reads_like_the_whole_document(tmp_path: Path, text: str) -> None:
    f = tmp_path / "seed.json"
    f.write_text(text, encoding="utf-8")
    assert got(str(f)) == expected(str(f), text) == ("ok", seeds.read(str(SEED)).doc)


@pytest.mark.parametrize("text", [
    '{"kind": "Platform", "kind": "Platform", "apiVersion": "reconciler/v1"}',  # a duplicate key: json keeps the last
    '{"apiVersion": "reconciler/v1", "kind": "Platform", "customers": [{"id": "a"}, ]}',
    '{"apiVersion": "reconciler/v1", "kind": "Platform", "customers": [{"id": "a"} {"id": "b"}]}',
    '{"apiVersion": "reconciler/v1", "kind": "Platform", "customers": []} x',
    '{"apiVersion": "reconciler/v1", "kind": "Platform", "customers": {}}',
    '{"apiVersion": "reconciler/v1", "kind": "Platform", "customers": [1, [], {"users": [1]}]}',
    '{"apiVersion": "reconciler/v1", "kind": "Platform", "customers": [], "customers": null}',
    '[]', 'null', '', '{', '{"a" 1}', '{"a": 1,}', '{"a": 1 "b": 2}', '{"a": 1e999999}', '"\\ud800"',
    '{"customers": [{"id": "a", "users": [{"id": 12345678901234567890123456789}]}]}',
])
def test_odd_and_broken_json_says_what_json_loads_says(tmp_path: Path, text: str) -> None:
    f = tmp_path / "seed.json"
    f.write_text(text, encoding="utf-8")
    assert got(str(f)) == expected(str(f), text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_json_seed_reads_like_the_whole_document(tmp_path: Path, data: st.DataObject) -> None:
    text = data.draw(st.sampled_from(TEXTS[:2]))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        at = data.draw(st.integers(min_value=0, max_value=len(text)))
        edit = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        ch = data.draw(st.sampled_from(list('{}[],:" 0a\n-') + ['"id"', '"users"', "null", '"x"']))
        if edit == "delete":
            text = text[:at] + text[at + 1:]
        elif edit == "insert":
            text = text[:at] + ch + text[at:]
        else:
            text = text[:at] + ch + text[at + 1:]
    f = tmp_path / "seed.json"
    f.write_text(text, encoding="utf-8")
    assert got(str(f)) == expected(str(f), text)


ids = st.sampled_from(["u1", "a.b@c-d", "", "x\n", "-x", "é", "a" * 129, "ok"])
values = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                   st.floats(), st.text(max_size=3), st.lists(st.integers(), max_size=1), ids)
keyed = st.one_of(ids, st.sampled_from(["id", "services", "hold", "sal", "overrides", "extra"]), st.integers())
overrides = st.one_of(st.none(), values, st.dictionaries(keyed, values, max_size=2))
user_service = st.one_of(st.fixed_dictionaries({"sal": ids}, optional={"overrides": overrides}),
                         st.dictionaries(keyed, values, max_size=2), values)
user = st.one_of(st.fixed_dictionaries({"id": ids}, optional={
    "hold": st.one_of(st.none(), st.text(max_size=3), values),
    "services": st.one_of(st.none(), values, st.dictionaries(keyed, user_service, max_size=2))}),
    st.dictionaries(keyed, values, max_size=2), values)


@settings(max_examples=800, deadline=None)
@given(users=st.lists(user, max_size=3))
def test_plain_users_are_only_users_the_model_accepts(users: list[Any]) -> None:
    if seeds._plain_users(users):
        seeds._USERS.validate_python(users)  # raises if the plain check let through what pydantic refuses


def test_the_fixture_users_are_plain() -> None:
    assert all(seeds._plain_users(c.get("users") or []) for c in DATA["customers"])


# -- YAML -------------------------------------------------------------------------------------
YAML_TEXT = SEED.read_text(encoding="utf-8")


def expected_yaml(f: str, text: str) -> tuple[str, Any]:
    """What the YAML seed said when it was loaded whole (load_all, then seed.check)."""
    docs = []
    for item in load_all(text, f):
        if not isinstance(item, Doc):
            return "error", item.format()
        if docs:
            return "error", f"{f}:{item.line}:1: error[yaml]: a seed holds one document"
        docs.append(item)
    if not docs or docs[0].data is None:
        return "error", f"{f}: the seed is empty"
    problems = seeds.check(docs[0])
    if problems:
        listed = "\n".join(p.format() for p in problems)
        return "error", f"{f}: the seed has {len(problems)} problem(s); nothing was created:\n{listed}"
    data = docs[0].data
    for key in ("locations", "services", "customers", "requests"):
        data[key] = data.get(key) or []
    return "ok", data


@pytest.mark.parametrize("text", [
    YAML_TEXT, BAD_SEED, BAD_SEED.replace("  - id: plain\n", "  - id: plain\n    colour: blue\n"),
    YAML_TEXT + "---\nkind: Platform\n", "", "null\n", "- 1\n", "kind: Platform\nkind: Platform\n",
    "customers: {}\n", "customers: [1, {users: [1]}]\n", "customers: &a []\n", "? [a]\n: 1\n",
    "customers:\n  - id: a\n    id: b\n", "customers:\n  - {id: a\n", "apiVersion: reconciler/v1\nkind: Platform\n",
    "customers:\n" + "  - " + "[" * 70 + "]" * 70 + "\n", "customers: [" + "[" * 61 + "]" * 61 + "]\n",
    "customers: [" + "[" * 62 + "]" * 62 + "]\n", "x: !!str 1\n", "customers:\n  - id: 0o17\n",
])
def test_odd_and_broken_yaml_says_what_load_all_says(tmp_path: Path, text: str) -> None:
    f = tmp_path / "seed.yaml"
    f.write_text(text, encoding="utf-8")
    assert got(str(f)) == expected_yaml(str(f), text)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_yaml_seed_reads_like_the_whole_document(tmp_path: Path, data: st.DataObject) -> None:
    text = data.draw(st.sampled_from([YAML_TEXT, BAD_SEED]))
    lines = text.split("\n")
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        at = data.draw(st.integers(min_value=0, max_value=len(lines) - 1))
        edit = data.draw(st.sampled_from(["delete", "duplicate", "indent", "dedent", "insert"]))
        if edit == "delete":
            del lines[at]
        elif edit == "duplicate":
            lines.insert(at, lines[at])
        elif edit == "indent":
            lines[at] = "  " + lines[at]
        elif edit == "dedent":
            lines[at] = lines[at].removeprefix("  ")
        else:
            lines.insert(at, data.draw(st.sampled_from(["  - id: x", "    users: [{id: u1}]", "customers: []", "- 1",
                                                        "  users:", "    - {id: u1, services: {hx: {sal: s1}}}",
                                                        "---", "x: &a 1", "    location: eu-west"])))
    text = "\n".join(lines)
    f = tmp_path / "seed.yaml"
    f.write_text(text, encoding="utf-8")
    assert got(str(f)) == expected_yaml(str(f), text)
