"""Safe YAML with positions: no tags, no anchors or aliases, no duplicate keys, bounded depth and size."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

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


class _Loader(yaml.SafeLoader):
    """Composes nodes only; refuses what a reviewed manifest must never contain."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            raise _Problem("aliases (*name) are not allowed in manifests", event.start_mark)
        if getattr(event, "anchor", None):
            raise _Problem("anchors (&name) are not allowed in manifests", event.start_mark)
        if getattr(event, "tag", None) is not None and not (
            isinstance(event, yaml.ScalarEvent) and event.tag == "!" and event.implicit[1]
        ):
            raise _Problem(f"tags ({short(event.tag)}) are not allowed in manifests", event.start_mark)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Problem(f"nesting deeper than {MAX_DEPTH} levels", event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_SCALARS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
            "tag:yaml.org,2002:null"}


def _pos(mark: yaml.Mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def _convert(loader: _Loader, node: Node, doc: Doc, path: PathTuple) -> Any:
    doc.marks[path] = _pos(node.start_mark)
    if isinstance(node, ScalarNode):
        if node.tag in _SCALARS:
            value = loader.construct_object(node)
            if isinstance(value, float) and not math.isfinite(value):
                raise _Problem(f"{node.value} is not a finite number", node.start_mark)
            return value
        return str(node.value)
    if isinstance(node, SequenceNode):
        return [_convert(loader, item, doc, path + (i,)) for i, item in enumerate(node.value)]
    assert isinstance(node, MappingNode)
    out: dict[str, Any] = {}
    for knode, vnode in node.value:
        if not isinstance(knode, ScalarNode):
            raise _Problem("a mapping key must be a plain value", knode.start_mark)
        key = str(loader.construct_object(knode)) if knode.tag in _SCALARS else str(knode.value)
        if key in out:
            first = doc.key_marks[path + (key,)]
            raise _Problem(f"duplicate key {short(key)} (first at line {first[0]})", knode.start_mark)
        doc.key_marks[path + (key,)] = _pos(knode.start_mark)
        out[key] = _convert(loader, vnode, doc, path + (key,))
    return out


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
    loader = _Loader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            doc = Doc(file=file, index=index, line=node.start_mark.line + 1, data=None)
            try:
                doc.data = _convert(loader, node, doc, ())
            except RecursionError:
                raise _Problem("nesting too deep", node.start_mark) from None
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
        yield error("yaml", f"unacceptable character {e.character!r}: {e.reason}").at(file, line, col)
    except yaml.YAMLError as e:
        yield error("yaml", short(str(e), 200)).at(file, 1, 1)
    except RecursionError:
        yield error("yaml", "nesting too deep").at(file, 1, 1)
    finally:
        loader.dispose()
