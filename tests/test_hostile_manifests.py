"""Hostile manifests (SECURITY.md, issue 6 part 1): each is answered by `validate` and by `plan` with the exact
exit code and message, naming the file (and the line where there is one), never a traceback, in bounded work
(parse events and tokens counted, not wall time: a busy CI neighbour must not fail a test; timings live in
benchmarks/) and in bounded memory. Every case runs through the CLI's one error boundary (`cli.main`) with
libyaml's parser and with PyYAML's own (users may have either); a few also run as the installed console script.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import RECONCILE_BIN, Ran, init_platform, run_main, subprocess_env

from reconciler import manifests, yamlsafe
from reconciler.render import count

# The fixture move tests/fixtures/moves/acme-to-northwind.yaml, spelled out so that positions read off it.
GOOD = """\
apiVersion: reconciler/v1
kind: CustomerMove
metadata:
  name: acme-to-northwind
  ticket: CHG-1001
spec:
  customer: acme
  toReseller: northwind
  location: eu-west
  services:
    hosted-exchange:
      plan: nw-exchange
      sals:
        standard: nw-standard
"""
#         line 16, column 25 is the value: ------v
QUOTA = GOOD + "      properties:\n        mailboxQuotaMB: {}\n"
SENTINEL = "reconcile-was-made-to-run-this"  # a tag payload creates this file if anything ever runs it
# What answering one hostile file may cost, counted: parse events the loader takes (two per level of the nesting
# limit, and a few more), and tokens PyYAML's own scanner makes (it looks up to 1024 characters ahead for a
# simple key: a 20,000-deep flow sequence is answered after about that many, whatever its size).
MAX_EVENTS = 2 * (yamlsafe.MAX_DEPTH + 2) + 4
MAX_TOKENS = 1024 + MAX_EVENTS
MAX_PYTHON_HEAP = 8 * 1024 * 1024  # tracemalloc peak for validate + plan of one hostile file
LIBYAML_MISSING = getattr(yaml, "CSafeLoader", None) is None


@dataclass(frozen=True)
class Case:
    """A file and what both commands print on stderr for it ("{f}" is the file's path).

    `plan`: where plan says something else (it knows the platform); `pure`: where PyYAML's own parser words a
    parse error differently from libyaml (same position, same code)."""

    id: str
    content: bytes
    lines: tuple[str, ...]
    code: int = 1
    moves: int = 0
    plan: tuple[str, ...] | None = None
    plan_code: int | None = None
    pure: tuple[str, ...] | None = None
    name: str = "m.yaml"
    extra: dict[str, Any] = field(default_factory=dict)


def b(text: str) -> bytes:
    return text.encode("utf-8")


def deep_block_mapping(levels: int, limit: int | None = None) -> bytes:
    """`levels` nested block mappings; with `limit`, only the first `limit` bytes (the whole may be 200 MB)."""
    out, size = [], 0
    for i in range(levels):
        out.append(" " * i + f"k{i}:\n")
        size += len(out[-1])
        if limit is not None and size >= limit:
            return b("".join(out))[:limit]
    return b("".join(out) + " " * levels + "x\n")


BILLION_LAUGHS = '\n'.join(
    ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"{x}: &{x} [{', '.join(['*' + p] * 9)}]" for p, x in zip("abcdefgh", "bcdefghi", strict=True)]) + "\n"

THIRTY_MB = b"<30 MB of comments>"
E_BAD_VALUE = "{f}:16:25: error[yaml]: {v} is not a finite number"
E_YAML_1_1 = ("{f}:16:25: error[yaml]: YAML 1.1 reads this plain value as {kind}, YAML 1.2 does not: quote it if "
              "it is text, or write the number plainly")
PROPERTY_TYPE = "{f}:16:25: error[property-type]: property 'mailboxQuotaMB' of 'hosted-exchange' is integer; got {v}"
ID = "^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"
NAME = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

CASES = [
    # -- bytes that are not UTF-8 text ------------------------------------------------------------
    Case("invalid-utf8", b"apiVersion: reconciler/v1\nkind: Customer\xffMove\n",
         ("{f}:2:15: error[yaml]: not valid UTF-8 (byte 0xff at offset 40); save the file as UTF-8",)),
    Case("latin-1", GOOD.replace("CHG-1001", "CHG-1001 café").encode("latin-1"),
         ("{f}:5:23: error[yaml]: not valid UTF-8 (byte 0xe9 at offset 103); save the file as UTF-8",)),
    Case("utf-16", GOOD.encode("utf-16"),
         ("{f}:1:1: error[yaml]: not valid UTF-8 (byte 0xff at offset 0); save the file as UTF-8",)),
    Case("gzip", b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4,
         ("{f}:1:2: error[yaml]: not valid UTF-8 (byte 0x8b at offset 1); save the file as UTF-8",)),
    Case("elf-with-nul-bytes", b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56 + b"\x03\x00>\x00",
         ("{f}:1:1: error[yaml]: the file holds NUL bytes: not a YAML text file",)),
    Case("nul-in-text", b(GOOD.replace("CHG-1001", "CHG\x00-1001")),
         ("{f}:1:1: error[yaml]: the file holds NUL bytes: not a YAML text file",)),
    Case("bell-character", b(GOOD.replace("CHG-1001", "CHG-\x07-1001")),
         ("{f}:5:15: error[yaml]: unacceptable character U+0007: control characters are not allowed",),
         pure=("{f}:5:15: error[yaml]: unacceptable character U+0007: special characters are not allowed",)),
    Case("raw-terminal-escape", b(GOOD.replace("CHG-1001", "\x1b]0;owned\x07\x1b[2J")),
         ("{f}:5:11: error[yaml]: unacceptable character U+001B: control characters are not allowed",),
         pure=("{f}:5:11: error[yaml]: unacceptable character U+001B: special characters are not allowed",)),
    # -- valid encodings that must work: byte-order mark, CRLF, both -----------------------------
    Case("byte-order-mark", b"\xef\xbb\xbf" + b(GOOD), (), code=0, moves=1),
    Case("crlf", b(GOOD.replace("\n", "\r\n")), (), code=0, moves=1),
    Case("bom-and-crlf", b"\xef\xbb\xbf" + b(GOOD.replace("\n", "\r\n")), (), code=0, moves=1),
    Case("bom-crlf-error-position", b"\xef\xbb\xbf" + b(GOOD.replace("toReseller", "toreseller").replace("\n", "\r\n")),
         ("{f}:8:3: error[schema]: $.spec.toreseller: unknown key 'toreseller' (allowed here: allowLarge, "
          "customer, location, services, toReseller)",
          "{f}:7:3: error[schema]: $.spec: 'toReseller' is required")),
    # -- tabs --------------------------------------------------------------------------------------
    Case("tab-indentation", b(GOOD.replace("  name: acme", "\tname: acme")),
         ("{f}:4:1: error[yaml]: a tab character where YAML allows only spaces (indentation); replace it with "
          "spaces",)),
    # -- 20,000-deep nesting, flow and block -------------------------------------------------------
    Case("flow-sequence-20000-deep", b("[" * 20_000 + "]" * 20_000),
         ("{f}:1:1001: error[yaml]: while increasing flow level exceeded maximum nesting depth",),
         pure=("{f}:1:65: error[yaml]: nesting deeper than 64 levels",)),
    Case("flow-mapping-20000-deep", b("{a: " * 20_000 + "1" + "}" * 20_000),
         ("{f}:1:257: error[yaml]: nesting deeper than 64 levels",)),
    Case("block-sequence-20000-deep", b("- " * 20_000 + "x\n"),
         ("{f}:1:129: error[yaml]: nesting deeper than 64 levels",)),
    Case("block-sequence-in-mapping-20000-deep", b("spec:\n  " + "- " * 20_000 + "x\n"),
         ("{f}:2:129: error[yaml]: nesting deeper than 64 levels",)),
    Case("block-mapping-65-deep", deep_block_mapping(65),
         ("{f}:65:65: error[yaml]: nesting deeper than 64 levels",)),
    # A block mapping 20,000 deep cannot be shorter than 200 MB: its first 2 MB are refused by size.
    Case("block-mapping-20000-deep", deep_block_mapping(20_000, limit=2_000_000),
         ("{f}:1:1: error[yaml]: file is larger than 1024 KiB; split it into smaller manifests",)),
    Case("explicit-keys-20000-deep", b("? " * 20_000 + "x\n"),
         ("{f}:1:3: error[yaml]: a mapping key must be a plain value",)),
    # -- anchors and aliases -----------------------------------------------------------------------
    Case("billion-laughs", b(BILLION_LAUGHS), ("{f}:1:4: error[yaml]: anchors (&name) are not allowed in manifests",)),
    Case("alias-without-anchor", b(GOOD.replace("customer: acme", "customer: *acme")),
         ("{f}:7:13: error[yaml]: aliases (*name) are not allowed in manifests",)),
    Case("merge-key", b(GOOD.replace("spec:\n", "spec:\n  <<: *base\n")),
         ("{f}:7:7: error[yaml]: aliases (*name) are not allowed in manifests",)),
    Case("anchor-on-the-document", b("--- &doc\n" + GOOD),
         ("{f}:1:5: error[yaml]: anchors (&name) are not allowed in manifests",)),
    # -- tags: refused before anything is constructed, so nothing ever runs ----------------------
    Case("python-object-apply", b(f"apiVersion: !!python/object/apply:os.system ['touch {SENTINEL}']\n"),
         ("{f}:1:13: error[yaml]: tags ('tag:yaml.org,2002:python/object/apply:os.system') are not allowed in "
          "manifests",)),
    Case("python-object-new-document", b(f"--- !!python/object/new:os.system ['touch {SENTINEL}']\n"),
         ("{f}:1:5: error[yaml]: tags ('tag:yaml.org,2002:python/object/new:os.system') are not allowed in "
          "manifests",)),
    Case("python-name", b("kind: !!python/name:os.system\n"),
         ("{f}:1:7: error[yaml]: tags ('tag:yaml.org,2002:python/name:os.system') are not allowed in manifests",)),
    Case("verbatim-tag", b(f"a: !<tag:yaml.org,2002:python/object/apply:os.system> ['touch {SENTINEL}']\n"),
         ("{f}:1:4: error[yaml]: tags ('tag:yaml.org,2002:python/object/apply:os.system') are not allowed in "
          "manifests",)),
    Case("tag-directive",
         b(f"%TAG !py! tag:yaml.org,2002:python/\n--- !py!object/apply:os.system ['touch {SENTINEL}']\n"),
         ("{f}:2:5: error[yaml]: tags ('tag:yaml.org,2002:python/object/apply:os.system') are not allowed in "
          "manifests",)),
    Case("local-tag", b(GOOD.replace("customer: acme", "customer: !evil acme")),
         ("{f}:7:13: error[yaml]: tags ('!evil') are not allowed in manifests",)),
    Case("str-tag", b(GOOD.replace("customer: acme", "customer: !!str acme")),
         ("{f}:7:13: error[yaml]: tags ('tag:yaml.org,2002:str') are not allowed in manifests",)),
    Case("binary-tag", b("a: !!binary aGVsbG8=\n"),
         ("{f}:1:4: error[yaml]: tags ('tag:yaml.org,2002:binary') are not allowed in manifests",)),
    # -- duplicate keys, at any depth ----------------------------------------------------------------
    Case("duplicate-top-level-key", b(GOOD + "kind: CustomerMove\n"),
         ("{f}:15:1: error[yaml]: duplicate key 'kind' (first at line 2)",)),
    Case("duplicate-spec-key", b(GOOD.replace("  location: eu-west\n", "  location: eu-west\n  customer: vault\n")),
         ("{f}:10:3: error[yaml]: duplicate key 'customer' (first at line 7)",)),
    Case("duplicate-sal-key", b(GOOD + "        standard: premium\n"),
         ("{f}:15:9: error[yaml]: duplicate key 'standard' (first at line 14)",)),
    Case("duplicate-flow-key",
         b(GOOD.replace("nw-standard\n", "nw-standard\n      properties: {archive: true, archive: false}\n")),
         ("{f}:15:35: error[yaml]: duplicate key 'archive' (first at line 15)",)),
    Case("duplicate-key-in-second-document", b(GOOD + "---\n" + GOOD.replace("ticket:", "name: again\n  ticket:")),
         ("{f}:20:3: error[yaml]: duplicate key 'name' (first at line 19)",), moves=1),
    Case("duplicate-key-int-and-string", b("a:\n  1: x\n  \"1\": y\n"),
         ("{f}:3:3: error[yaml]: duplicate key '1' (first at line 2)",)),
    # -- not a mapping ------------------------------------------------------------------------------
    Case("top-level-list", b("- apiVersion: reconciler/v1\n- kind: CustomerMove\n"),
         ("{f}:1:1: error[schema]: $: expected a mapping, got a list",)),
    Case("top-level-string", b("acme-to-northwind\n"),
         ("{f}:1:1: error[schema]: $: expected a mapping, got a string",)),
    Case("top-level-integer", b("--- 42\n"), ("{f}:1:5: error[schema]: $: expected a mapping, got an integer",)),
    # -- empty: warnings, not errors ----------------------------------------------------------------
    Case("empty-file", b"", ("{f}:1:1: warning[empty]: the file holds no manifest",), code=0),
    Case("only-document-marker", b"---\n", ("{f}:2:1: warning[empty]: empty document; nothing to plan",), code=0),
    Case("only-comments", b("# nothing here yet\n\n"), ("{f}:1:1: warning[empty]: the file holds no manifest",),
         code=0),
    Case("explicit-null-document", b"--- ~\n", ("{f}:1:1: warning[empty]: empty document; nothing to plan",), code=0),
    # -- look-alike Unicode: ids and names are ASCII only ------------------------------------------
    Case("cyrillic-a-in-customer", b(GOOD.replace("customer: acme", "customer: \u0430cme")),
         (f"{{f}}:7:13: error[schema]: $.spec.customer: '\u0430cme' does not match {ID}",)),
    Case("cyrillic-a-in-name", b(GOOD.replace("name: acme", "name: \u0430cme")),
         (f"{{f}}:4:9: error[schema]: $.metadata.name: '\u0430cme-to-northwind' does not match {NAME}",)),
    Case("cyrillic-o-in-reseller", b(GOOD.replace("toReseller: northwind", "toReseller: n\u043erthwind")),
         (f"{{f}}:8:15: error[schema]: $.spec.toReseller: 'n\u043erthwind' does not match {ID}",)),
    Case("cyrillic-e-in-location", b(GOOD.replace("eu-west", "eu-w\u0435st")),
         (f"{{f}}:9:13: error[schema]: $.spec.location: 'eu-w\u0435st' does not match {ID}",)),
    Case("cyrillic-o-in-service-key", b(GOOD.replace("    hosted-exchange:", "    h\u043ested-exchange:")),
         (f"{{f}}:11:5: error[schema]: $.spec.services.h\u043ested-exchange: key 'h\u043ested-exchange' does not "
          f"match {ID}",)),
    Case("cyrillic-a-in-sal-key", b(GOOD.replace("        standard:", "        st\u0430ndard:")),
         (f"{{f}}:14:9: error[schema]: $.spec.services.hosted-exchange.sals.st\u0430ndard: key 'st\u0430ndard' "
          f"does not match {ID}",)),
    Case("zero-width-space-in-customer", b(GOOD.replace("customer: acme", 'customer: "ac\\u200bme"')),
         (f"{{f}}:7:13: error[schema]: $.spec.customer: 'ac\\u200bme' does not match {ID}",)),
    Case("fullwidth-letter-in-customer", b(GOOD.replace("customer: acme", "customer: \uff41cme")),
         (f"{{f}}:7:13: error[schema]: $.spec.customer: '\uff41cme' does not match {ID}",)),
    Case("combining-accent-in-customer", b(GOOD.replace("customer: acme", "customer: acme\u0301")),
         (f"{{f}}:7:13: error[schema]: $.spec.customer: 'acme\u0301' does not match {ID}",)),
    # -- numbers: beyond 64 bits (a platform rule: plan says so), not finite (the loader refuses) ----
    Case("integer-2-to-the-63", b(QUOTA.format(2**63)), (), code=0, moves=1,
         plan=(PROPERTY_TYPE.format(f="{f}", v=2**63),), plan_code=1),
    Case("integer-below-minus-2-to-the-63", b(QUOTA.format(-(2**63) - 1)), (), code=0, moves=1,
         plan=(PROPERTY_TYPE.format(f="{f}", v=-(2**63) - 1),), plan_code=1),
    Case("integer-2-to-the-70", b(QUOTA.format(2**70)), (), code=0, moves=1,
         plan=(PROPERTY_TYPE.format(f="{f}", v=2**70),), plan_code=1),
    # YAML 1.1 forms that YAML 1.2 (and a reviewer) read otherwise: refused where they are (issue 9 item 12)
    Case("hex-integer-2-to-the-64", b(QUOTA.format("0x10000000000000000")), (E_YAML_1_1.format(
        f="{f}", kind="a hexadecimal number"),)),
    Case("octal-integer", b(QUOTA.format("010")), (E_YAML_1_1.format(f="{f}", kind="an octal number"),)),
    Case("base-60-integer", b(QUOTA.format("12:30")), (E_YAML_1_1.format(f="{f}", kind="a base-60 number"),)),
    Case("yaml-1-1-boolean", b(QUOTA.format("on")),
         ("{f}:16:25: error[yaml]: YAML 1.1 reads this plain value as a boolean, YAML 1.2 as text: quote it if it "
          "is text, or write true or false for a boolean",)),
    Case("integer-of-5000-digits", b(QUOTA.format("9" * 5000)),
         ("{f}:16:25: error[yaml]: an integer of 5000 digits is too long (at most 4300)",)),
    Case("integer-2-to-the-63-minus-1-is-fine", b(QUOTA.format(2**63 - 1)), (), code=0, moves=1, plan=(),
         plan_code=0),
    Case("inf", b(QUOTA.format(".inf")), (E_BAD_VALUE.format(f="{f}", v=".inf"),)),
    Case("minus-inf", b(QUOTA.format("-.Inf")), (E_BAD_VALUE.format(f="{f}", v="-.Inf"),)),
    Case("nan", b(QUOTA.format(".NaN")), (E_BAD_VALUE.format(f="{f}", v=".NaN"),)),
    Case("float-overflow", b(QUOTA.format("1.0e+999")), (E_BAD_VALUE.format(f="{f}", v="1.0e+999"),)),
    # -- size -----------------------------------------------------------------------------------------
    # 30 MB: the manifest, then 30,720 comment lines of 1 KiB (written by write_case, never held in memory).
    Case("thirty-megabytes", b(GOOD) + THIRTY_MB,
         ("{f}:1:1: error[yaml]: file is larger than 1024 KiB; split it into smaller manifests",)),
]


@pytest.fixture(scope="module")
def platform_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    root = tmp_path_factory.mktemp("platform")
    url = init_platform(root)
    run_main("validate", "--help")  # imports and schema caches are not what the cases measure
    return {"RECONCILE_PLATFORM": url, "RECONCILE_STATE": str(root / "state.json"), "NO_COLOR": "1",
            "COLUMNS": "200"}


@dataclass
class Work:
    """What the YAML parser did for one command: events the loader took, tokens the pure-Python scanner made."""

    events: int = 0
    tokens: int = 0

    def reset(self) -> None:
        self.events = self.tokens = 0

    def bounded(self) -> None:
        assert self.events <= MAX_EVENTS, f"{self.events} parse events"
        assert self.tokens <= MAX_TOKENS, f"{self.tokens} tokens scanned"


WORK = Work()


def counting(base: Any) -> Any:
    class Counting(base):  # type: ignore[misc, valid-type]
        def get_event(self) -> Any:
            WORK.events += 1
            return super().get_event()

        def dispose(self) -> None:
            if hasattr(self, "tokens_taken"):  # PyYAML's own scanner
                WORK.tokens += self.tokens_taken + len(self.tokens)
            super().dispose()

    return Counting


@pytest.fixture(params=["libyaml", "pure-python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "libyaml":
        if LIBYAML_MISSING:
            pytest.skip("PyYAML was built without libyaml")
        monkeypatch.setattr(yamlsafe, "_EventSource", counting(yaml.CSafeLoader))
    else:
        monkeypatch.setattr(yamlsafe, "_EventSource", counting(yaml.SafeLoader))
    return str(request.param)


def write_case(path: Path, content: bytes) -> None:
    if not content.endswith(THIRTY_MB):
        path.write_bytes(content)
        return
    with open(path, "wb") as fh:
        fh.write(content[: -len(THIRTY_MB)])
        line = b"# " + b"x" * 1021 + b"\n"
        for _ in range(30):
            fh.write(line * 1024)
    assert path.stat().st_size > 30 * 1024 * 1024


def counted(*args: str, env: dict[str, str | None]) -> Ran:
    """run_main, counting the parser's work from zero."""
    WORK.reset()
    return run_main(*args, env=env)


def python_heap_peak(*args: str, env: dict[str, str | None]) -> int:
    """The peak of the Python heap that run_main allocates (a file read whole, or a structure built from an
    alias bomb, would show here; libyaml's own C buffers would not, see the console-script test)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        run_main(*args, env=env)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def no_crash(ran: Ran) -> None:
    assert "Traceback" not in ran.out + ran.err, ran
    assert "internal error" not in ran.err, ran


def verdict(lines: tuple[str, ...], files: int = 1, moves: int = 0) -> str:
    errors = sum(": error[" in x for x in lines)
    warnings = sum(": warning[" in x for x in lines)
    return (f"{count(files, 'file')}, {count(moves, 'move')}: {'invalid' if errors else 'valid'} "
            f"({count(errors, 'error')}, {count(warnings, 'warning')})\n")


def expect(lines: tuple[str, ...], path: Path) -> str:
    return "".join(x.replace("{f}", str(path)) + "\n" for x in lines)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_manifest(case: Case, parser: str, platform_env: dict[str, str | None], tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a tag payload would `touch` the sentinel here
    path = tmp_path / "moves" / case.name
    path.parent.mkdir()
    write_case(path, case.content)
    lines = case.pure if parser == "pure-python" and case.pure is not None else case.lines

    ran = counted("validate", str(path), env=platform_env)
    no_crash(ran)
    assert (ran.code, ran.err, ran.out) == (case.code, expect(lines, path), verdict(lines, moves=case.moves)), ran
    WORK.bounded()
    peak = python_heap_peak("validate", str(path), env=platform_env)
    assert peak < MAX_PYTHON_HEAP, f"validate allocated {peak / 2**20:.1f} MiB"

    plan_lines = lines if case.plan is None else case.plan
    plan_code = case.code if case.plan_code is None else case.plan_code
    ran = counted("plan", str(path), "--allow-empty", env=platform_env)
    no_crash(ran)
    assert (ran.code, ran.err) == (plan_code, expect(plan_lines, path)), ran
    WORK.bounded()
    errors, warnings = sum(": error[" in x for x in plan_lines), sum(": warning[" in x for x in plan_lines)
    if case.moves == 0:
        assert ran.out.startswith(f"Plan: 0 to move, 0 no-op, 0 invalid; 0 users change; 0 requests; "
                                  f"{count(errors, 'error')}, {count(warnings, 'warning')}\n"), ran
    elif plan_code == 0:
        assert ran.out.startswith("Plan: 1 to move, 0 no-op, 0 invalid; 3 users change; 1 request; "
                                  "0 errors, 0 warnings\n"), ran
    else:
        tail = f"; {count(errors, 'error')}, {count(warnings, 'warning')}\n"
        assert tail in ran.out.splitlines(keepends=True)[0], ran
    assert not (tmp_path / SENTINEL).exists(), "a YAML tag ran code"
    assert not Path(platform_env["RECONCILE_STATE"] or "").exists(), "plan wrote a state file"


def test_every_case_has_its_own_file_content() -> None:
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({c.content for c in CASES}) == len(CASES)


# -- the 30 MB file is refused without being read whole ---------------------------------------------
def test_a_30_mb_manifest_is_refused_after_reading_one_mebibyte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                platform_env: dict[str, str | None]) -> None:
    big = tmp_path / "big.yaml"
    with open(big, "wb") as fh:
        fh.write(b(GOOD))
        fh.truncate(30 * 1024 * 1024)  # 30 MB: the manifest, then NUL bytes nobody should ever look at
    read: list[int] = []

    class Spy:
        def __init__(self, fh: Any) -> None:
            self.fh = fh

        def __enter__(self) -> Spy:
            return self

        def __exit__(self, *exc: Any) -> None:
            self.fh.close()

        def read(self, n: int = -1) -> bytes:
            data: bytes = self.fh.read(n)
            read.append(len(data))
            return data

    real_fdopen = os.fdopen
    monkeypatch.setattr(manifests.os, "fdopen", lambda *a, **k: Spy(real_fdopen(*a, **k)))
    for cmd in ("validate", "plan"):
        ran = run_main(cmd, str(big), env=platform_env)
        assert (ran.code, ran.err) == (
            1, f"{big}:1:1: error[yaml]: file is larger than 1024 KiB; split it into smaller manifests\n"), ran
    assert read == [manifests.MAX_MANIFEST_BYTES + 1] * 2


def run_measured(*args: str, cwd: Path, env: dict[str, str]) -> tuple[Ran, int]:
    """`reconcile ARGS` as a real process, and the peak resident set of that process alone (KiB), from wait4."""
    with open(cwd / "stdout", "w+b") as out, open(cwd / "stderr", "w+b") as err:
        proc = subprocess.Popen([str(RECONCILE_BIN), *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err)
        deadline = time.monotonic() + 60
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Ran(proc.returncode, out.read().decode(), err.read().decode()), usage.ru_maxrss


@pytest.fixture(scope="module")
def script_env(platform_env: dict[str, str | None]) -> dict[str, str]:
    if not RECONCILE_BIN.exists():
        pytest.fail(f"install the project (pip install -e .): no {RECONCILE_BIN}")
    return subprocess_env(**{k: v for k, v in platform_env.items() if v is not None})


@pytest.fixture(scope="module")
def baseline_rss(tmp_path_factory: pytest.TempPathFactory, script_env: dict[str, str]) -> int:
    """The console script's peak resident set for a small, valid manifest."""
    d = tmp_path_factory.mktemp("baseline")
    (d / "good.yaml").write_text(GOOD, encoding="utf-8")
    ran, rss = run_measured("plan", "good.yaml", cwd=d, env=script_env)
    assert ran.code == 0, ran
    return rss


SCRIPT_CASES = ["python-object-apply", "tag-directive", "billion-laughs", "flow-sequence-20000-deep",
                "block-sequence-20000-deep", "invalid-utf8", "thirty-megabytes", "cyrillic-a-in-customer"]


@pytest.mark.parametrize("case_id", SCRIPT_CASES)
def test_the_console_script_answers_without_a_traceback_in_bounded_memory(
        case_id: str, tmp_path: Path, script_env: dict[str, str], baseline_rss: int) -> None:
    case = next(c for c in CASES if c.id == case_id)
    path = tmp_path / "moves" / "m.yaml"
    path.parent.mkdir()
    write_case(path, case.content)
    for cmd in ("validate", "plan"):
        ran, rss = run_measured(cmd, "moves", cwd=tmp_path, env=script_env)
        assert "Traceback" not in ran.out + ran.err, ran
        assert (ran.code, ran.err) == (1, expect(case.lines, Path("moves") / "m.yaml")), ran
        # No case may cost more than a few MiB over planning one good manifest (30 MB read whole would).
        assert rss - baseline_rss < 12 * 1024, f"{cmd}: {rss} KiB peak, {baseline_rss} KiB for a good manifest"
    assert not (tmp_path / SENTINEL).exists()


# -- paths ----------------------------------------------------------------------------------------
def test_a_missing_path_is_named_with_a_hint(tmp_path: Path, platform_env: dict[str, str | None]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD, encoding="utf-8")
    missing = tmp_path / "moves" / "nope.yaml"
    for cmd in ("validate", "plan"):
        ran = counted(cmd, str(good), str(missing), env=platform_env)
        no_crash(ran)
        assert (ran.code, ran.out, ran.err) == (
            1, "", f"error: {missing}: no such file or directory\n  hint: pass manifest files or folders that "
                   "hold them\n"), ran
        assert WORK.events == 0  # refused before any file is parsed


def test_a_missing_path_through_the_console_script(tmp_path: Path, script_env: dict[str, str]) -> None:
    ran, _ = run_measured("plan", "nope", cwd=tmp_path, env=script_env)
    assert (ran.code, ran.out, ran.err) == (
        1, "", "error: nope: no such file or directory\n  hint: pass manifest files or folders that hold them\n")


def test_a_symlink_loop_in_a_directory(tmp_path: Path, platform_env: dict[str, str | None]) -> None:
    d = tmp_path / "moves"
    (d / "sub").mkdir(parents=True)
    (d / "good.yaml").write_text(GOOD, encoding="utf-8")
    (d / "sub" / "loop").symlink_to(d, target_is_directory=True)  # a directory loop: never followed
    (d / "self.yaml").symlink_to(d / "self.yaml")  # a file link to itself
    (d / "ping.yaml").symlink_to(d / "pong.yaml")  # two links to each other
    (d / "pong.yaml").symlink_to(d / "ping.yaml")
    loop = os.strerror(40)  # ELOOP: "Too many levels of symbolic links"
    lines = (f"{d}/ping.yaml: error[yaml]: cannot read: {loop}", f"{d}/pong.yaml: error[yaml]: cannot read: {loop}",
             f"{d}/self.yaml: error[yaml]: cannot read: {loop}")
    ran = run_main("validate", str(d), env=platform_env)
    no_crash(ran)
    assert (ran.code, ran.err, ran.out) == (1, expect(lines, d),
                                            "4 files, 1 move: invalid (3 errors, 0 warnings)\n")
    ran = run_main("plan", str(d), env=platform_env)
    no_crash(ran)
    assert ran.code == 1 and ran.err == expect(lines, d), ran
    assert ran.out.startswith("Plan: 1 to move, 0 no-op, 0 invalid; 3 users change; 1 request; 3 errors, 0 warnings\n")


def test_a_symlink_loop_named_on_the_command_line(tmp_path: Path, platform_env: dict[str, str | None]) -> None:
    (tmp_path / "self.yaml").symlink_to(tmp_path / "self.yaml")
    ran = run_main("validate", str(tmp_path / "self.yaml"), env=platform_env)
    no_crash(ran)
    assert (ran.code, ran.err) == (1, f"error: {tmp_path / 'self.yaml'}: no such file or directory\n"
                                      "  hint: pass manifest files or folders that hold them\n"), ran


def test_a_named_pipe_or_a_device_is_refused_not_waited_for(tmp_path: Path, script_env: dict[str, str]) -> None:
    """A FIFO among the manifests would block a reader forever, /dev/zero would never end: neither is read.
    (A real process with a timeout, so that a regression fails instead of hanging the suite.)"""
    d = tmp_path / "moves"
    d.mkdir()
    (d / "good.yaml").write_text(GOOD, encoding="utf-8")
    os.mkfifo(d / "pipe.yaml")
    for args, lines in ((["moves"], ("moves/pipe.yaml: error[yaml]: not a regular file",)),
                        (["/dev/zero", "moves/good.yaml"], ("/dev/zero: error[yaml]: not a regular file",))):
        for cmd in ("validate", "plan"):
            try:
                p = subprocess.run([str(RECONCILE_BIN), cmd, *args], cwd=tmp_path, env=script_env,
                                   capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=10)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{cmd} {args} blocked")
            assert (p.returncode, p.stderr) == (1, expect(lines, Path())), p
            if cmd == "validate":
                assert p.stdout == verdict(lines, files=2, moves=1)


def test_the_fixture_move_is_the_good_manifest() -> None:
    from conftest import MOVES

    assert (MOVES / "acme-to-northwind.yaml").read_text("utf-8") == GOOD
    assert sys.maxsize == 2**63 - 1  # the 64-bit boundary the integer cases are about
