"""Safe YAML with positions: no tags, no anchors or aliases, no duplicate keys, bounded depth and size."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import ScalarNode

from reconciler.diagnostics import Diagnostic, error
from reconciler.schema import KEY_LIMIT, PathTuple, short

MAX_DEPTH = 64


@dataclass
class Doc:
    """One YAML document: its data and where each of its nodes starts (1-based line, column)."""

    file: str
    index: int
    line: int
    data: Any
    marks: dict[PathTuple, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[PathTuple, tuple[int, int]] = field(default_factory=dict)
    source_sha256: str | None = None  # of the whole file's bytes
    siblings: int = 1  # documents in the file

    def position(self, path: PathTuple, at_key: bool = False) -> tuple[int, int]:
        """The position of `path`, or of its nearest ancestor that exists."""
        p = tuple(path)
        if at_key and p in self.key_marks:
            return self.key_marks[p]
        while p:
            if p in self.marks:
                return self.marks[p]
            p = p[:-1]
        return self.marks.get((), (self.line, 1))


class _Problem(Exception):
    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


# libyaml's parser where PyYAML was built with it (fast, and not recursive); PyYAML's own otherwise.
_EventSource: Any = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader
_RESOLVER = yaml.resolver.Resolver()
# The first characters of the resolver's implicit types (None: it has one for any first character).
_TYPED_FIRST = None if None in _RESOLVER.yaml_implicit_resolvers else frozenset(_RESOLVER.yaml_implicit_resolvers)
_CONSTRUCT = yaml.constructor.SafeConstructor()
_NODE_EVENTS = (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent, yaml.AliasEvent)


def _pos(mark: Any) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


MAX_INT_DIGITS = 4300  # Python's own default limit for int(str): a longer integer is no property value

# YAML 1.1 (what PyYAML resolves) and YAML 1.2 (what most other tools, and readers, expect) disagree on these
# plain scalars; a manifest must not mean something its reviewer did not read, so they are refused.
_PLAIN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)\Z")
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_BOOL_WORDS = {w: b for ws, b in (("yes on y", True), ("no off n", False)) for word in ws.split()
               for w in (word, word.capitalize(), word.upper())}
_OCTAL_12 = re.compile(r"[-+]?0o[0-7_]+\Z")


def _number_problem(text: str, mark: Any) -> _Problem:
    """The value itself is never quoted: it may be a sensitive property's (a password `0123`)."""
    kind = ("a base-60 number" if ":" in text else "a hexadecimal number" if "x" in text else
            "a binary number" if "b" in text else "an octal number" if re.match(r"[-+]?0[0-9_]", text) else
            "a number")
    return _Problem(f"YAML 1.1 reads this plain value as {kind}, YAML 1.2 does not: quote it if it is text, "
                    "or write the number plainly", mark)


def _scalar(ev: Any) -> Any:
    """A plain scalar as YAML 1.1 and YAML 1.2 both read it (null, booleans, decimal numbers); anything
    the two read differently (010, 0x10, 0o10, 12:30, 1_000, on, yes, y...) is refused, so that a value
    never means what its reviewer did not read. Quoted and block scalars are strings."""
    if not ev.implicit[0]:
        return ev.value
    text: str = ev.value
    if text and _TYPED_FIRST is not None and text[0] not in _TYPED_FIRST:
        return text  # no implicit type (null, bool, int, float...) starts with this character: text
    tag = _RESOLVER.resolve(ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:bool" or text in _BOOL_WORDS:
        if text in _BOOLS:
            return _BOOLS[text]
        raise _Problem("YAML 1.1 reads this plain value as a boolean, YAML 1.2 as text: quote it if it is text, "
                       "or write true or false for a boolean", ev.start_mark)
    if tag == "tag:yaml.org,2002:int":
        if not _PLAIN_INT.match(text):
            raise _number_problem(text, ev.start_mark)
        digits = len(text.lstrip("+-"))
        if digits > MAX_INT_DIGITS:
            raise _Problem(f"an integer of {digits} digits is too long (at most {MAX_INT_DIGITS})", ev.start_mark)
        return int(text)
    if tag == "tag:yaml.org,2002:float":
        if "_" in text or ":" in text:
            raise _number_problem(text, ev.start_mark)
        value = float(_CONSTRUCT.construct_yaml_float(ScalarNode(tag, text)))  # .inf and .nan too
        if not math.isfinite(value):
            raise _Problem(f"{text} is not a finite number", ev.start_mark)
        return value
    if _OCTAL_12.match(text):
        raise _Problem("YAML 1.2 reads this plain value as an octal number, YAML 1.1 as text: quote it if it is "
                       "text, or write the number plainly", ev.start_mark)
    return text  # timestamps and the like stay the text that was written


class _Frame:
    __slots__ = ("container", "path", "key", "index")

    def __init__(self, container: Any, path: PathTuple) -> None:
        self.container = container
        self.path = path
        self.key: str | None = None
        self.index = 0


def _check(ev: Any) -> None:
    if isinstance(ev, yaml.AliasEvent):
        raise _Problem("aliases (*name) are not allowed in manifests", ev.start_mark)
    if getattr(ev, "anchor", None):
        raise _Problem("anchors (&name) are not allowed in manifests", ev.start_mark)
    tag = getattr(ev, "tag", None)
    if tag is not None and not (isinstance(ev, yaml.ScalarEvent) and tag == "!" and ev.implicit[1]):
        raise _Problem(f"tags ({short(tag)}) are not allowed in manifests", ev.start_mark)


_SCALAR, _MAP_START, _SEQ_START = yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent
_ENDS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _compose(src: Any, doc: Doc, prefix: PathTuple = (), depth: int = 0) -> Any:
    """One document's value from parse events, with an explicit stack: no recursion, bounded depth. (Or one
    value inside a document: at `prefix`, `depth` containers down.) Hot (a plan parses a thousand files):
    events are told apart by their exact type, and a plain event needs no call to be checked."""
    stack: list[_Frame] = []
    marks, key_marks = doc.marks, doc.key_marks
    get_event = src.get_event
    while True:
        ev = get_event()
        kind = type(ev)
        if kind in _ENDS:
            done = stack.pop()
            if not stack:
                return done.container
            continue
        if kind is _SCALAR or kind is _MAP_START or kind is _SEQ_START:
            if ev.anchor is not None or ev.tag is not None:  # a plain node needs no check
                _check(ev)
        else:
            _check(ev)  # an alias, or an event no document holds: refused with its message
        parent = stack[-1] if stack else None
        in_map = parent is not None and type(parent.container) is dict
        if in_map and parent.key is None:  # type: ignore[union-attr]
            if kind is not _SCALAR:
                raise _Problem("a mapping key must be a plain value", ev.start_mark)
            key = str(_scalar(ev))
            kp = parent.path + (key,)  # type: ignore[union-attr]
            if key in parent.container or kp in key_marks:  # type: ignore[union-attr]
                first = key_marks[kp]
                raise _Problem(f"duplicate key {short(key, KEY_LIMIT)} (first at line {first[0]})",
                               ev.start_mark)
            mark = ev.start_mark
            key_marks[kp] = (mark.line + 1, mark.column + 1)
            parent.key = key  # type: ignore[union-attr]
            continue
        if parent is None:
            path: PathTuple = prefix
        elif in_map:
            path = parent.path + (parent.key,)  # type: ignore[operator]
        else:
            path = parent.path + (parent.index,)
        mark = ev.start_mark
        marks[path] = (mark.line + 1, mark.column + 1)
        if kind is _SCALAR:
            value: Any = _scalar(ev)
        elif kind is _MAP_START:
            value = {}
        else:
            value = []
        if parent is not None:
            if in_map:
                parent.container[parent.key] = value
                parent.key = None
            else:
                parent.container.append(value)
                parent.index += 1
        if kind is _SCALAR:
            if parent is None:
                return value
            continue
        if len(stack) + depth >= MAX_DEPTH:
            raise _Problem(f"nesting deeper than {MAX_DEPTH} levels", ev.start_mark)
        stack.append(_Frame(value, path))


def _diag(file: str, message: str, mark: yaml.Mark | None, severity: str = "error") -> Diagnostic:
    d = error("yaml", message)
    if severity == "warning":
        d = Diagnostic(code="yaml", message=message, severity="warning")
    line, col = _pos(mark) if mark is not None else (None, None)
    return d.at(file, line, col)


def decode(raw: bytes, file: str) -> tuple[str | None, Diagnostic | None]:
    """UTF-8 (a byte-order mark is fine) or a diagnostic pointing at the first bad byte."""
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        before = raw[: e.start]
        line = before.count(b"\n") + 1
        col = e.start - (before.rfind(b"\n") + 1) + 1
        return None, error("yaml", f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                                   "save the file as UTF-8").at(file, line, col)


def _char_at(text: str, mark: Any) -> str:
    lines = text.split("\n", mark.line + 1)
    line = lines[mark.line] if mark.line < len(lines) else ""
    return line[mark.column: mark.column + 1]


def load_all(text: str, file: str) -> Iterator[Doc | Diagnostic]:
    """Every document of `text`, or a diagnostic for the first thing that stops the parse."""
    if "\x00" in text:
        yield error("yaml", "the file holds NUL bytes: not a YAML text file").at(file, 1, 1)
        return
    src: Any = None
    index = 0
    try:
        src = _EventSource(text)  # the pure-Python reader checks characters as it is made
        src.get_event()  # StreamStart
        while not src.check_event(yaml.StreamEndEvent):
            start = src.get_event()  # DocumentStart
            if src.check_event(yaml.DocumentEndEvent):
                src.get_event()
                continue
            doc = Doc(file=file, index=index, line=start.end_mark.line + 1, data=None)
            first = src.peek_event()
            doc.line = first.start_mark.line + 1
            doc.data = _compose(src, doc)
            src.get_event()  # DocumentEnd
            index += 1
            yield doc
    except _Problem as p:
        yield _diag(file, p.message, p.mark)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        msg = " ".join(x for x in (e.context, e.problem) if x) or "not valid YAML"
        if mark is not None and _char_at(text, mark) == "\t":
            msg = "a tab character where YAML allows only spaces (indentation); replace it with spaces"
        yield _diag(file, msg, mark)
    except yaml.reader.ReaderError as e:  # control characters and the like
        before = text[: e.position]
        line, col = before.count("\n") + 1, e.position - (before.rfind("\n") + 1) + 1
        ch = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or "\0")
        yield error("yaml", f"unacceptable character U+{ch:04X}: {e.reason}").at(file, line, col)
    except yaml.YAMLError as e:
        yield error("yaml", short(str(e), 200)).at(file, 1, 1)
    finally:
        if src is not None:
            src.dispose()


class _Unusual(Exception):
    """The streaming reader leaves this document to load_all."""


def stream_items(text: str, file: str, key: str) -> Iterator[tuple[int, Any, Doc] | Doc | list[Doc | Diagnostic]]:
    """A one-document YAML text whose top level is a mapping, the items of the sequence under `key` one at a
    time: yields (index, value, Doc placing that item's nodes by their full paths) for each item, then the
    Doc of the rest (`key` holding an empty list). Anything else, a problem included, and the caller gets
    what load_all says of the whole text (a list): the same documents, the same first diagnostic."""
    if "\x00" in text:
        yield list(load_all(text, file))
        return
    src: Any = None
    try:
        src = _EventSource(text)
        src.get_event()  # StreamStart
        start = src.get_event()
        if not isinstance(start, yaml.DocumentStartEvent) or not src.check_event(yaml.MappingStartEvent):
            raise _Unusual
        top = src.get_event()
        _check(top)
        head = Doc(file=file, index=0, line=top.start_mark.line + 1, data={})
        head.marks[()] = _pos(top.start_mark)
        while not src.check_event(yaml.MappingEndEvent):
            ev = src.get_event()
            if not isinstance(ev, yaml.ScalarEvent):
                raise _Unusual
            _check(ev)
            name = str(_scalar(ev))
            if name in head.data:
                raise _Unusual
            head.key_marks[(name,)] = _pos(ev.start_mark)
            if name != key or not src.check_event(yaml.SequenceStartEvent):
                head.data[name] = _compose(src, head, (name,), 1)
                continue
            seq = src.get_event()
            _check(seq)
            head.marks[(name,)] = _pos(seq.start_mark)
            head.data[name] = []
            index = 0
            while not src.check_event(yaml.SequenceEndEvent):
                item = Doc(file=file, index=0, line=head.line, data=None)
                value = _compose(src, item, (name, index), 2)
                yield index, value, item
                index += 1
            src.get_event()
        src.get_event()  # MappingEnd
        src.get_event()  # DocumentEnd
        if not src.check_event(yaml.StreamEndEvent):
            raise _Unusual
    except (_Unusual, _Problem, yaml.YAMLError):
        yield list(load_all(text, file))
        return
    finally:
        if src is not None:
            src.dispose()
    yield head


def reads_as_text(value: str) -> bool:
    """Whether `value`, written as a plain scalar (`k: value`), loads back as this very string here."""
    if not value or not value.isprintable() or value != value.strip():
        return False
    out = list(load_all(f"k: {value}\n", "-"))
    return len(out) == 1 and isinstance(out[0], Doc) and out[0].data == {"k": value}


def ambiguous(text: str) -> bool:
    """A string that PyYAML would write plain but that this loader refuses plain (y, N, 0o17...)."""
    return text in _BOOL_WORDS or bool(_OCTAL_12.match(text))
