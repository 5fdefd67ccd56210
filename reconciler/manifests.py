"""Find manifest files, load them safely with positions, check them against the schema, make Moves."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
)

from reconciler import schema
from reconciler.diagnostics import Diagnostic, error, warning
from reconciler.errors import ReconcilerError
from reconciler.model import ID_PATTERN, sha256_of
from reconciler.schema import PathTuple
from reconciler.yamlsafe import Doc, decode, load_all

MAX_MANIFEST_BYTES = 1024 * 1024
SUFFIXES = (".yaml", ".yml")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# The same constraints as schemas/move.schema.json: pydantic accepts a valid manifest in microseconds;
# only a document it refuses goes through jsonschema, for path-addressed messages.
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
Value = StrictStr | StrictInt | StrictFloat | StrictBool | None


class ServiceSpec(_Model):
    plan: Id | None = None
    sals: dict[Id, Id] = Field(default_factory=dict)
    properties: dict[Id, Value] = Field(default_factory=dict)


class Spec(_Model):
    customer: Id
    to_reseller: Id = Field(alias="toReseller")
    location: Id
    services: dict[Id, ServiceSpec] = Field(default_factory=dict)


class Metadata(_Model):
    name: Name
    ticket: Annotated[str, StringConstraints(max_length=200)] | None = None
    description: Annotated[str, StringConstraints(max_length=10000)] | None = None


class Manifest(_Model):
    api_version: Literal["reconciler/v1"] = Field(alias="apiVersion")
    kind: Literal["CustomerMove"]
    metadata: Metadata
    spec: Spec


@dataclass(frozen=True)
class Move:
    """A schema-valid CustomerMove document and where it came from."""

    manifest: Manifest
    doc: Doc
    digest: str

    @property
    def name(self) -> str:
        return self.manifest.metadata.name

    @property
    def spec(self) -> Spec:
        return self.manifest.spec

    @property
    def file(self) -> str:
        return self.doc.file

    @property
    def line(self) -> int:
        return self.doc.line

    @property
    def document(self) -> Any:
        return self.doc.data

    def locate(self, d: Diagnostic, path: PathTuple, at_key: bool = False) -> Diagnostic:
        line, col = self.doc.position(path, at_key)
        return d.at(self.file, line, col)


@dataclass(frozen=True)
class Loaded:
    moves: list[Move]
    diagnostics: list[Diagnostic]
    files: int


def discover(paths: Sequence[str]) -> list[str]:
    """Files in argument order; a directory's *.yaml/*.yml recursively, hidden entries skipped, sorted."""
    out: list[str] = []
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            found: list[tuple[tuple[str, ...], str]] = []
            for root, dirs, files in os.walk(p, followlinks=False):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for f in files:
                    if f.startswith(".") or not f.endswith(SUFFIXES):
                        continue
                    full = os.path.join(root, f)
                    found.append((Path(os.path.relpath(full, p)).parts, full))
            out.extend(full for _, full in sorted(found))
        elif p.exists():
            out.append(arg)
        else:
            raise ReconcilerError(f"{arg}: no such file or directory",
                                  hint="pass manifest files or folders that hold them")
    return out


def read_docs(file: str, limit: int = MAX_MANIFEST_BYTES) -> tuple[list[Doc], list[Diagnostic]]:
    """Documents of one file, or the yaml diagnostics that stop it."""
    try:
        with open(file, "rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as e:
        return [], [error("yaml", f"cannot read: {e.strerror or e}").at(file, None, None)]
    if len(raw) > limit:
        return [], [error("yaml", f"file is larger than {limit // 1024} KiB; split it into smaller manifests")
                    .at(file, 1, 1)]
    text, bad = decode(raw, file)
    if bad is not None or text is None:
        return [], [bad] if bad else []
    docs: list[Doc] = []
    diags: list[Diagnostic] = []
    for item in load_all(text, file):
        if isinstance(item, Diagnostic):
            diags.append(item)
        elif item.data is None:
            diags.append(warning("empty", "empty document; nothing to plan").at(file, item.line, 1))
        else:
            docs.append(item)
    if not docs and not diags:
        diags.append(warning("empty", "the file holds no manifest").at(file, 1, 1))
    return docs, diags


def _to_move(doc: Doc) -> Move | list[Diagnostic]:
    try:
        manifest = Manifest.model_validate(doc.data)
    except ValidationError as e:
        diags = []
        for d, path, at_key in schema.iter_diagnostics("move", doc.data):
            line, col = doc.position(path, at_key)
            diags.append(d.at(doc.file, line, col))
        if diags:
            return diags
        # jsonschema let it through (Python's `$` also matches before a final newline): say pydantic's word.
        first = e.errors()[0]
        path = tuple(x for x in first["loc"] if isinstance(x, (str, int)))
        path = tuple("toReseller" if x == "to_reseller" else "apiVersion" if x == "api_version" else x for x in path)
        line, col = doc.position(path)
        return [error("schema", f"{schema.json_path(path)}: {first['msg']}", schema.json_path(path))
                .at(doc.file, line, col)]
    return Move(manifest=manifest, doc=doc, digest=sha256_of(doc.data))


def load(paths: Sequence[str]) -> Loaded:
    """Load every manifest; one bad document never hides the others."""
    files = discover(paths)
    moves: list[Move] = []
    diags: list[Diagnostic] = []
    for f in files:
        docs, problems = read_docs(f)
        diags.extend(problems)
        for doc in docs:
            got = _to_move(doc)
            if isinstance(got, Move):
                moves.append(got)
            else:
                diags.extend(got)
    unique, dup_diags = split_duplicates(moves)
    return Loaded(moves=unique, diagnostics=diags + dup_diags, files=len(files))


def split_duplicates(moves: Iterable[Move]) -> tuple[list[Move], list[Diagnostic]]:
    """Moves whose metadata.name is used once, and a duplicate-name error for each of the others."""
    by_name: dict[str, list[Move]] = {}
    for m in moves:
        by_name.setdefault(m.name, []).append(m)
    keep: list[Move] = []
    diags: list[Diagnostic] = []
    for m in moves:
        same = by_name[m.name]
        if len(same) == 1:
            keep.append(m)
            continue
        others = ", ".join(f"{o.file}:{o.line}" for o in same if o is not m)
        path = ("metadata", "name")
        diags.append(m.locate(error("duplicate-name", f"metadata.name {m.name!r} is also used by {others}; "
                                    "names must be unique", "$.metadata.name"), path))
    return keep, diags
