"""Safe YAML with positions: no tags, no anchors or aliases, no duplicate keys, bounded depth and size."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import ScalarNode

from reconciler.diagnostics import Diagnostic, error
from reconciler.schema import PathTuple, short

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
_CONSTRUCT = yaml.constructor.SafeConstructor()
_SCALARS = {
    "tag:yaml.org,2002:int": _CONSTRUCT.construct_yaml_int,
    "tag:yaml.org,2002:float": _CONSTRUCT.construct_yaml_float,
    "tag:yaml.org,2002:bool": _CONSTRUCT.construct_yaml_bool,
    "tag:yaml.org,2002:null": _CONSTRUCT.construct_yaml_null,
}
_NODE_EVENTS = (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent, yaml.AliasEvent)


def _pos(mark: Any) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def _scalar(ev: Any) -> Any:
    """Plain scalars resolve as YAML 1.1 does (ints, floats, booleans, null); everything else is a string."""
    if not ev.implicit[0]:
        return ev.value
    tag = _RESOLVER.resolve(ScalarNode, ev.value, (True, False))  # type: ignore[no-untyped-call]
    construct = _SCALARS.get(tag)
    if construct is None:
        return ev.value  # timestamps and the like stay the text that was written
    value = construct(ScalarNode(tag, ev.value, ev.start_mark, ev.end_mark))
    if isinstance(value, float) and not math.isfinite(value):
        raise _Problem(f"{ev.value} is not a finite number", ev.start_mark)
    return value


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


def _compose(src: Any, doc: Doc) -> Any:
    """One document's value from parse events, with an explicit stack: no recursion, bounded depth."""
    stack: list[_Frame] = []
    while True:
        ev = src.get_event()
        if isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            done = stack.pop()
            if not stack:
                return done.container
            continue
        _check(ev)
        parent = stack[-1] if stack else None
        if parent is not None and isinstance(parent.container, dict) and parent.key is None:
            if not isinstance(ev, yaml.ScalarEvent):
                raise _Problem("a mapping key must be a plain value", ev.start_mark)
            key = str(_scalar(ev))
            kp = parent.path + (key,)
            if key in parent.container or kp in doc.key_marks:
                first = doc.key_marks[kp]
                raise _Problem(f"duplicate key {short(key)} (first at line {first[0]})", ev.start_mark)
            doc.key_marks[kp] = _pos(ev.start_mark)
            parent.key = key
            continue
        if parent is None:
            path: PathTuple = ()
        elif isinstance(parent.container, dict):
            assert parent.key is not None
            path = parent.path + (parent.key,)
        else:
            path = parent.path + (parent.index,)
        doc.marks[path] = _pos(ev.start_mark)
        if isinstance(ev, yaml.ScalarEvent):
            value: Any = _scalar(ev)
        elif isinstance(ev, yaml.MappingStartEvent):
            value = {}
        else:
            value = []
        if parent is not None:
            if isinstance(parent.container, dict):
                assert parent.key is not None
                parent.container[parent.key] = value
                parent.key = None
            else:
                parent.container.append(value)
                parent.index += 1
        if isinstance(ev, yaml.ScalarEvent):
            if parent is None:
                return value
            continue
        if len(stack) >= MAX_DEPTH:
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
        msg = " ".join(x for x in (e.context, e.problem) if x) or "not valid YAML"
        yield _diag(file, msg, e.problem_mark or e.context_mark)
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
