"""yamlsafe: positions, and everything a reviewed manifest must never contain."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from reconciler import yamlsafe
from reconciler.diagnostics import Diagnostic
from reconciler.yamlsafe import MAX_DEPTH, Doc, decode, load_all


@pytest.fixture(autouse=True, params=["libyaml", "pure-python"])
def event_source(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with libyaml's parser (when PyYAML has it) and with PyYAML's own: users may have either."""
    if request.param == "libyaml":
        if getattr(yaml, "CSafeLoader", None) is None:
            pytest.skip("PyYAML was built without libyaml")
        monkeypatch.setattr(yamlsafe, "_EventSource", yaml.CSafeLoader)
    else:
        monkeypatch.setattr(yamlsafe, "_EventSource", yaml.SafeLoader)
    return str(request.param)


def docs(text: str, file: str = "m.yaml") -> list[Doc | Diagnostic]:
    return list(load_all(text, file))


def only_error(text: str, file: str = "m.yaml") -> Diagnostic:
    """The single diagnostic that stops `text` (after any good documents before it)."""
    out = docs(text, file)
    assert isinstance(out[-1], Diagnostic), out
    d = out[-1]
    assert d.code == "yaml" and d.severity == "error" and d.file == file
    return d


def datas(text: str) -> list[object]:
    out = docs(text)
    assert all(isinstance(x, Doc) for x in out), [x.format() for x in out if isinstance(x, Diagnostic)]
    return [x.data for x in out if isinstance(x, Doc)]


# -- positions ------------------------------------------------------------------------------
def test_marks_are_one_based_line_and_column() -> None:
    (doc,) = docs("a: 1\nb:\n  c: two\n  d: [x, z]\n")
    assert isinstance(doc, Doc)
    assert doc.data == {"a": 1, "b": {"c": "two", "d": ["x", "z"]}}
    assert doc.line == 1
    assert doc.marks[()] == (1, 1)
    assert doc.marks[("a",)] == (1, 4)
    assert doc.marks[("b", "c")] == (3, 6)
    assert doc.marks[("b", "d")] == (4, 6)
    assert doc.marks[("b", "d", 0)] == (4, 7)
    assert doc.marks[("b", "d", 1)] == (4, 10)
    assert doc.key_marks[("b", "c")] == (3, 3)


def test_position_falls_back_to_the_nearest_ancestor_and_can_point_at_the_key() -> None:
    (doc,) = docs("spec:\n  customer: acme\n")
    assert isinstance(doc, Doc)
    assert doc.position(("spec", "customer")) == (2, 13)
    assert doc.position(("spec", "customer"), at_key=True) == (2, 3)
    assert doc.position(("spec", "missing", 3)) == doc.marks[("spec",)] == (2, 3)
    assert doc.position(("nothing",)) == (1, 1)


def test_errors_point_at_the_offending_line_and_column() -> None:
    # The wording is the parser's (libyaml or PyYAML); the position is ours to get right.
    d = only_error("a: 1\nb: [1, 2\n")
    assert (d.line, d.column) == (3, 1)
    assert "flow sequence" in d.message
    d = only_error("a: 1\nb: c: d\n")
    assert (d.line, d.column) == (2, 5)
    assert d.message.startswith("mapping values are not allowed")


# -- duplicate keys -------------------------------------------------------------------------
@pytest.mark.parametrize("text, line, col, first", [
    ("x: 1\nx: 2\n", 2, 1, 1),
    ("a:\n  b:\n    x: 1\n    z: 2\n    x: 3\n", 5, 5, 3),
    ("a:\n  - k: 1\n  - x: 1\n    x: 2\n", 4, 5, 3),
    ("a: {x: 1, x: 2}\n", 1, 11, 1),
    ("- [ {x: 1}, {z: 2, x: 3, x: 4} ]\n", 1, 26, 1),
], ids=["top", "nested-block", "in-list", "flow", "flow-nested"])
def test_duplicate_keys_at_any_depth(text: str, line: int, col: int, first: int) -> None:
    d = only_error(text)
    assert d.message == f"duplicate key 'x' (first at line {first})"
    assert (d.line, d.column) == (line, col)


def test_duplicate_keys_are_compared_as_loaded_values() -> None:
    # `1` and `1` are the same key; `"1"` and `1` both load as the key "1" as well.
    assert only_error("1: a\n1: b\n").message == "duplicate key '1' (first at line 1)"
    assert only_error("'1': a\n1: b\n").message == "duplicate key '1' (first at line 1)"


def test_the_same_key_in_sibling_mappings_is_fine() -> None:
    assert datas("a: {x: 1}\nb: {x: 2}\n") == [{"a": {"x": 1}, "b": {"x": 2}}]


# -- anchors, aliases, tags -----------------------------------------------------------------
def test_anchor_is_refused() -> None:
    d = only_error("a: &x 1\n")
    assert d.message == "anchors (&name) are not allowed in manifests"
    assert (d.line, d.column) == (1, 4)


def test_alias_is_refused() -> None:
    # An alias needs an anchor first; the anchor is what stops the parse.
    d = only_error("a: &x {k: 1}\nb: *x\n")
    assert "anchors" in d.message


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    start = time.perf_counter()
    d = only_error("\n".join(lines) + "\n")
    assert time.perf_counter() - start < 1.0
    assert d.message.endswith("are not allowed in manifests")
    assert (d.line, d.column) == (1, 4)


def test_bare_alias_without_anchor_is_an_error_not_a_crash() -> None:
    d = only_error("a: *nowhere\n")
    assert d.line == 1


@pytest.mark.parametrize("text, shown", [
    ("a: !!python/object/apply:os.system ['true']\n", "'tag:yaml.org,2002:python/object/apply:os.system'"),
    ("a: !!str 1\n", "'tag:yaml.org,2002:str'"),
    ("a: !custom x\n", "'!custom'"),
    ("a: !!map {b: 1}\n", "'tag:yaml.org,2002:map'"),
    ("a: !!seq [1]\n", "'tag:yaml.org,2002:seq'"),
    ("%TAG ! tag:example.com,2000:\n---\na: !foo 1\n", "'tag:example.com,2000:foo'"),
])
def test_tags_are_refused(text: str, shown: str) -> None:
    d = only_error(text)
    assert d.message == f"tags ({shown}) are not allowed in manifests"


def test_python_tags_never_run_anything(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payloads = [
        f"a: !!python/object/apply:os.system ['touch {marker}']\n",
        f"!!python/object/apply:os.system ['touch {marker}']\n",
        f"a: !!python/object/new:os.system ['touch {marker}']\n",
        f"- !!python/object/apply:subprocess.call [['touch', '{marker}']]\n",
        f"? !!python/object/apply:os.system ['touch {marker}']\n: 1\n",
    ]
    for text in payloads:
        out = docs(text)
        assert isinstance(out[-1], Diagnostic) and "not allowed" in out[-1].message, out
    assert not marker.exists()


def test_quoted_strings_and_the_non_specific_tag_are_plain_strings() -> None:
    # A quoted scalar carries the implicit "!" tag: it is a string, not a refused tag.
    assert datas("a: '1'\nb: \"true\"\n") == [{"a": "1", "b": "true"}]


# -- nesting --------------------------------------------------------------------------------
def test_flow_nesting_up_to_the_limit_is_accepted() -> None:
    depth = MAX_DEPTH
    (data,) = datas("[" * depth + "]" * depth + "\n")
    for _ in range(depth - 1):
        assert isinstance(data, list) and len(data) == 1
        data = data[0]
    assert data == []


def test_flow_nesting_deeper_than_64_is_refused() -> None:
    d = only_error("[" * 65 + "]" * 65 + "\n")
    assert d.message == "nesting deeper than 64 levels"
    assert (d.line, d.column) == (1, 65)


def test_block_nesting_deeper_than_64_is_refused() -> None:
    text = "".join("  " * i + f"k{i}:\n" for i in range(70)) + "  " * 70 + "v: 1\n"
    d = only_error(text)
    assert d.message == "nesting deeper than 64 levels"
    assert (d.line, d.column) == (65, 129)  # the 65th mapping: the value of k63


def test_block_sequence_nesting_deeper_than_64_is_refused() -> None:
    text = "".join("  " * i + "-\n" for i in range(80)) + "  " * 80 + "- 1\n"
    assert only_error(text).message == "nesting deeper than 64 levels"


def test_twenty_thousand_open_brackets_answer_in_under_a_second(event_source: str) -> None:
    # PyYAML's pure-Python scanner looks up to 1024 characters ahead for a simple key, checking every pending one
    # at each token: a bounded ~1 s whatever the length. libyaml answers in a millisecond.
    limit = 1.0 if event_source == "libyaml" else 3.0
    start = time.perf_counter()
    d = only_error("[" * 20_000)
    assert time.perf_counter() - start < limit
    # ours ("nesting deeper than 64 levels") or libyaml's own flow-level limit, which may trip first
    assert "nesting" in d.message and d.line == 1


def test_deep_flow_mappings_answer_quickly(event_source: str) -> None:
    start = time.perf_counter()
    d = only_error("{a: " * 20_000)
    assert time.perf_counter() - start < (1.0 if event_source == "libyaml" else 3.0)
    assert d.message == "nesting deeper than 64 levels"


# -- encodings, line ends, odd bytes ------------------------------------------------------------
def test_bom_is_accepted() -> None:
    text, bad = decode(b"\xef\xbb\xbfa: 1\n", "m.yaml")
    assert bad is None and text == "a: 1\n"
    (doc,) = docs(text)
    assert isinstance(doc, Doc) and doc.data == {"a": 1} and doc.marks[("a",)] == (1, 4)


def test_crlf_line_ends_work_and_keep_positions() -> None:
    (doc,) = docs("a: 1\r\nb:\r\n  c: x\r\n")
    assert isinstance(doc, Doc)
    assert doc.data == {"a": 1, "b": {"c": "x"}}
    assert doc.marks[("b", "c")] == (3, 6)
    d = only_error("a: 1\r\nb:\r\n  c: 2\r\n  c: 3\r\n")
    assert d.message == "duplicate key 'c' (first at line 3)"
    assert (d.line, d.column) == (4, 3)


@pytest.mark.parametrize("raw, line, col, byte", [
    (b"a: 1\nb: \xff\n", 2, 4, "0xff"),
    (b"\xc3", 1, 1, "0xc3"),
    (b"a: 1\nbb: x\xc3(\n", 2, 6, "0xc3"),
    (b"a: caf\xe9\n", 1, 7, "0xe9"),
])
def test_invalid_utf8_points_at_the_bad_byte(raw: bytes, line: int, col: int, byte: str) -> None:
    text, bad = decode(raw, "m.yaml")
    assert text is None and bad is not None
    assert (bad.code, bad.file, bad.line, bad.column) == ("yaml", "m.yaml", line, col)
    assert f"not valid UTF-8 (byte {byte} at offset {raw.index(bytes([int(byte, 16)]))})" in bad.message


def test_nul_bytes_are_refused() -> None:
    d = only_error("a: 1\nb: x\x00y\n")
    assert d.message == "the file holds NUL bytes: not a YAML text file"
    assert (d.line, d.column) == (1, 1)


def test_escaped_control_characters_in_quoted_strings_are_data() -> None:
    assert datas('a: "\\e[31m\\x07"\n') == [{"a": "\x1b[31m\x07"}]


@pytest.mark.parametrize("char", ["\x07", "\x1b", "\x7f"])
def test_raw_control_characters_are_a_yaml_diagnostic(char: str, event_source: str) -> None:
    d = only_error(f"a: 1\nb: x{char}y\n")
    assert (d.line, d.column) == (2, 5)
    assert d.message.startswith(f"unacceptable character U+{ord(char):04X}")


# -- scalars --------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["a: .inf\n", "a: -.Inf\n", "a: +.INF\n", "a: .nan\n", "a: .NaN\n",
                                  "- [1, .inf]\n"])
def test_non_finite_numbers_are_refused(text: str) -> None:
    d = only_error(text)
    assert d.message.endswith("is not a finite number")
    assert d.line == 1


def test_quoted_inf_is_a_string() -> None:
    assert datas("a: '.inf'\n") == [{"a": ".inf"}]


def test_timestamps_stay_strings() -> None:
    assert datas("a: 2024-01-01\nb: 2024-01-01T10:00:00Z\nc: 2001-12-14 21:59:43.10 -5\n") == [
        {"a": "2024-01-01", "b": "2024-01-01T10:00:00Z", "c": "2001-12-14 21:59:43.10 -5"}]


def test_plain_scalars_keep_their_yaml_types() -> None:
    assert datas("i: 42\nf: 1.5\nt: true\nnul: null\ntilde: ~\ns: text\n") == [
        {"i": 42, "f": 1.5, "t": True, "nul": None, "tilde": None, "s": "text"}]


# -- YAML 1.1 surprises (issue 9 item 12): refused where the value is, never silently converted ------
def _number(kind: str) -> str:
    return (f"YAML 1.1 reads this plain value as {kind}, YAML 1.2 does not: quote it if it is text, "
            "or write the number plainly")


BOOLEAN = ("YAML 1.1 reads this plain value as a boolean, YAML 1.2 as text: quote it if it is text, "
           "or write true or false for a boolean")


@pytest.mark.parametrize("scalar, message", [
    ("010", _number("an octal number")), ("-010", _number("an octal number")), ("00", _number("an octal number")),
    ("12:30", _number("a base-60 number")), ("1:2.5", _number("a base-60 number")),
    ("0x10", _number("a hexadecimal number")), ("0b11", _number("a binary number")),
    ("1_000", _number("a number")), ("1_0.5", _number("a number")),
    ("0o10", "YAML 1.2 reads this plain value as an octal number, YAML 1.1 as text: quote it if it is text, "
             "or write the number plainly"),
    ("on", BOOLEAN), ("Off", BOOLEAN), ("YES", BOOLEAN), ("no", BOOLEAN), ("y", BOOLEAN), ("N", BOOLEAN),
])
def test_yaml_1_1_forms_are_refused_at_their_position(scalar: str, message: str) -> None:
    d = only_error(f"spec:\n  services:\n    mail:\n      properties: {{quota: {scalar}}}\n")
    assert (d.line, d.column, d.message) == (4, 27, message)


def test_a_yaml_1_1_form_as_a_key_is_refused_at_the_key() -> None:
    d = only_error("sals:\n  010: gold\n")
    assert (d.line, d.column, d.message) == (2, 3, _number("an octal number"))


@pytest.mark.parametrize("text, value", [
    ("'010'", "010"), ('"12:30"', "12:30"), ("'on'", "on"), ("'y'", "y"), ("'0x10'", "0x10"),
    ("10", 10), ("-0", 0), ("+12", 12), ("0", 0), ("8.5", 8.5), (".5", 0.5), ("1.0e+3", 1000.0),
    ("true", True), ("False", False), ("TRUE", True), ("null", None), ("~", None), ("x10", "x10"),
    ("1e3", "1e3"), ("2024-01-01", "2024-01-01"), ("yesterday", "yesterday"), ("one", "one"),
])
def test_values_both_yaml_versions_agree_on_load(text: str, value: object) -> None:
    assert datas(f"a: {text}\n") == [{"a": value}]


def test_an_integer_too_long_for_python_is_a_diagnostic_not_a_crash() -> None:
    d = only_error("a: 1\nb: " + "9" * 5000 + "\n")
    assert (d.line, d.column, d.message) == (2, 4, "an integer of 5000 digits is too long (at most 4300)")


def test_an_integer_of_4300_digits_loads() -> None:
    assert datas("a: " + "9" * 4300 + "\n") == [{"a": int("9" * 4300)}]


# -- a tab (issue 9 item 15) ------------------------------------------------------------------
TAB_MESSAGE = "a tab character where YAML allows only spaces (indentation); replace it with spaces"


@pytest.mark.parametrize("text, line, col", [
    ("a:\n\tb: 1\n", 2, 1), ("a: 1\n\tb: 2\n", 2, 1), ("\ta: 1\n", 1, 1), ("- a\n-\tb\n", 2, 2)])
def test_a_tab_is_named_as_a_tab(text: str, line: int, col: int) -> None:
    d = only_error(text)
    assert (d.line, d.column, d.message) == (line, col, TAB_MESSAGE)


def test_a_tab_inside_a_quoted_value_is_fine() -> None:
    assert datas('a: "x\tb"\n') == [{"a": "x\tb"}]


def test_mapping_keys_must_be_plain_values() -> None:
    d = only_error("? [a, b]\n: 1\n")
    assert d.message == "a mapping key must be a plain value"
    assert (d.line, d.column) == (1, 3)


def test_non_string_keys_become_strings() -> None:
    assert datas("1: a\ntrue: b\n") == [{"1": "a", "True": "b"}]


# -- documents ------------------------------------------------------------------------------
def test_multiple_documents_in_order_with_their_start_lines() -> None:
    out = docs("a: 1\n---\nb: 2\n---\n# c\nc: 3\n")
    assert [(x.index, x.line, x.data) for x in out if isinstance(x, Doc)] == [
        (0, 1, {"a": 1}), (1, 3, {"b": 2}), (2, 6, {"c": 3})]
    assert all(isinstance(x, Doc) for x in out)


def test_empty_documents_are_yielded_as_none() -> None:
    out = docs("---\n---\na: 1\n")
    assert [x.data for x in out if isinstance(x, Doc)] == [None, {"a": 1}]


def test_a_good_document_is_kept_before_a_broken_one() -> None:
    out = docs("a: 1\n---\nb: [\n")
    assert isinstance(out[0], Doc) and out[0].data == {"a": 1}
    assert isinstance(out[1], Diagnostic) and out[1].line == 4
    assert len(out) == 2


def test_directives_and_document_end_markers() -> None:
    assert datas("%YAML 1.1\n---\na: 1\n...\n") == [{"a": 1}]


def test_an_empty_text_has_no_documents() -> None:
    assert docs("") == []
    assert docs("# only a comment\n") == []
