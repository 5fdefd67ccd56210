"""Fuzzing the input side: nothing a user can put in a manifest makes reconciler raise anything but
ReconcilerError, or print a traceback (or an "internal error") through the command line.

Fast by default (the `default` hypothesis profile, see conftest.py); `HYPOTHESIS_PROFILE=long` for a long run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import init_platform, manifest, manifest_yaml, run_main
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import app, manifests
from reconciler.config import Settings
from reconciler.errors import ReconcilerError


def examples(share: float) -> int:
    """This test's part of the loaded profile's budget (the default profile keeps the file near 20 s)."""
    return max(5, int(settings().max_examples * share))


@dataclass
class Fuzz:
    root: Path
    settings: Settings
    env: dict[str, str | None]

    def file(self, text: str | bytes, name: str = "m.yaml") -> Path:
        p = self.root / "in" / name
        p.parent.mkdir(exist_ok=True)
        if isinstance(text, str):
            p.write_text(text, encoding="utf-8", errors="surrogatepass")
        else:
            p.write_bytes(text)
        return p


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    root = tmp_path_factory.mktemp("fuzz")
    url = init_platform(root)
    state = root / "state.json"
    yield Fuzz(root, Settings(platform_url=url, state=str(state)),
               {"RECONCILE_PLATFORM": url, "RECONCILE_STATE": str(state), "NO_COLOR": "1"})


def load_and_plan(f: Fuzz, path: Path) -> None:
    try:
        manifests.load([str(path)])
        app.plan([str(path)], f.settings)
    except ReconcilerError:
        pass


def no_crash_via_cli(f: Fuzz, path: Path) -> None:
    for args in (("validate", "--format", "json", str(path)), ("plan", "--format", "markdown", str(path))):
        r = run_main(*args, env=f.env)
        assert r.code in (0, 1, 2), r
        assert "Traceback" not in r.out + r.err
        assert "internal error" not in r.err, r
    assert not Path(f.settings.state).exists()


# -- YAML-ish text ------------------------------------------------------------------------------------
GOOD = manifest_yaml(manifest(services={"hosted-exchange": {"plan": "nw-exchange", "sals": {"standard": "nw-standard"},
                                                            "properties": {"mailboxQuotaMB": 8192}}}))
TOKENS = ["apiVersion", "reconciler/v1", "kind", "CustomerMove", "metadata", "name", "spec", "customer", "acme",
          "toReseller", "northwind", "location", "eu-west", "services", "hosted-exchange", "sals", "plan",
          "properties", "mailboxQuotaMB", "journalPassword", ": ", ":", "- ", "-", "\n", "  ", "    ", "---\n", "...",
          "[", "]", "{", "}", ",", "'", '"', "&a ", "*a", "!!str ", "!x ", "? ", "#", "|", ">", "%YAML 1.2\n",
          "<<: ", "~", "null", "true", ".inf", ".nan", "0x1F", "1e999", "2024-01-01", "\t", "\\", "@", "`",
          "\x00", "\x07", "\x1b[31m", "\x85", "\u2028", "\u202e", "\ufeff", "é", "\U0001f600", "9" * 30]

yamlish = st.lists(st.sampled_from(TOKENS) | st.text(max_size=6), max_size=60).map("".join)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """The good manifest with a few characters replaced, inserted or removed."""
    text = GOOD
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.sampled_from(TOKENS) | st.characters())
        if op == "insert":
            text = text[:i] + piece + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 8)):]
        else:
            text = text[:i] + piece + text[i + 1:]
    return text


@settings(max_examples=examples(3.0), deadline=None)
@given(text=yamlish | mutated())
def test_yamlish_text_never_crashes_load_or_plan(fuzz: Fuzz, text: str) -> None:
    load_and_plan(fuzz, fuzz.file(text))


@settings(max_examples=examples(1.5), deadline=None)
@given(raw=st.binary(max_size=200) | mutated().map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_random_bytes_never_crash_load_or_plan(fuzz: Fuzz, raw: bytes) -> None:
    load_and_plan(fuzz, fuzz.file(raw))


# -- manifest-shaped documents -----------------------------------------------------------------------
IDS = ["acme", "vault", "initech", "litware", "contoso", "northwind", "woodgrove", "fabrikam", "ghost", "eu-west",
       "us-east", "hosted-exchange", "sharepoint", "standard", "premium", "nw-standard", "legacy", "exchange-basic",
       "nw-exchange", "sp-basic", "mailboxQuotaMB", "activeSync", "journalPassword", "storageMB", "archive"]
CUSTOMERS = ["acme", "vault", "initech", "litware", "contoso", "northwind", "ghost"]
RESELLERS = ["northwind", "woodgrove", "fabrikam", "contoso", "litware", "initech", "ghost"]

ident = st.sampled_from(IDS)
scalar = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True)
          | st.text(max_size=20) | ident)
anything = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)

service_spec = st.fixed_dictionaries({}, optional={
    "plan": ident,
    "sals": st.dictionaries(ident, ident, max_size=3),
    "properties": st.dictionaries(ident, scalar, max_size=3),
})

# Mostly schema-valid moves against the fixture platform, so that the planner and the rules get exercised ...
valid_move = st.fixed_dictionaries(
    {"apiVersion": st.just("reconciler/v1"), "kind": st.just("CustomerMove"),
     "metadata": st.fixed_dictionaries(
         {"name": st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")},
         optional={"ticket": st.text(max_size=30), "description": st.text(max_size=60)}),
     "spec": st.fixed_dictionaries(
         {"customer": st.sampled_from(CUSTOMERS), "toReseller": st.sampled_from(RESELLERS),
          "location": st.sampled_from(["eu-west", "eu-west", "us-east"])},
         optional={"services": st.dictionaries(st.sampled_from(["hosted-exchange", "sharepoint", "crm"]),
                                               service_spec, max_size=2)})})


@st.composite
def perturbed(draw: st.DrawFn) -> Any:
    """... and some of them broken in one place: a value replaced by anything, a key removed, a key added."""
    doc = draw(valid_move)
    paths: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, k))

    walk(doc, ())
    path = draw(st.sampled_from(paths))
    if not path:
        return draw(anything)
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    op = draw(st.sampled_from(["replace", "delete", "add"]))
    if op == "replace":
        parent[path[-1]] = draw(anything)
    elif op == "delete":
        del parent[path[-1]]
    elif isinstance(parent[path[-1]], dict):
        parent[path[-1]][draw(st.text(max_size=8))] = draw(anything)
    return doc


move_doc = st.one_of(valid_move, valid_move, perturbed())


def dump(docs: list[Any]) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=False, allow_unicode=True) for d in docs)


@settings(max_examples=examples(4.0), deadline=None)
@given(docs=st.lists(move_doc, min_size=1, max_size=4))
def test_manifest_shaped_documents_never_crash_load_or_plan(fuzz: Fuzz, docs: list[Any]) -> None:
    load_and_plan(fuzz, fuzz.file(dump(docs)))


# -- through the command line: no traceback, no internal error ---------------------------------------
@settings(max_examples=examples(1.0), deadline=None)
@given(docs=st.lists(move_doc, min_size=1, max_size=3))
def test_cli_never_prints_a_traceback_for_manifests(fuzz: Fuzz, docs: list[Any]) -> None:
    no_crash_via_cli(fuzz, fuzz.file(dump(docs)))


@settings(max_examples=examples(1.0), deadline=None)
@given(text=yamlish | mutated())
def test_cli_never_prints_a_traceback_for_text(fuzz: Fuzz, text: str) -> None:
    no_crash_via_cli(fuzz, fuzz.file(text))


# -- regressions found by fuzzing, kept as plain examples ------------------------------------------------
@pytest.mark.parametrize("text", [
    "a: 1\nb: x\x07y\n",  # a raw control character
    "\x85",
    "[" * 5000,
    "{a: " * 5000,
    "- " * 200 + "x\n",
    "apiVersion: reconciler/v1\nkind: CustomerMove\nmetadata: {name: a}\nspec: {customer: acme, toReseller: "
    "northwind, location: eu-west, services: {hosted-exchange: {properties: {mailboxQuotaMB: "
    "1180591620717411303424}}}}\n",
    "apiVersion: reconciler/v1\nkind: CustomerMove\nmetadata: {name: a}\nspec: {customer: acme, toReseller: "
    "northwind, location: eu-west, services: {hosted-exchange: {properties: {mailboxQuotaMB: 1e308}}}}\n",
])
def test_known_awkward_inputs(fuzz: Fuzz, text: str) -> None:
    path = fuzz.file(text)
    load_and_plan(fuzz, path)
    no_crash_via_cli(fuzz, path)
