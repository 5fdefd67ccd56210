"""Find manifest files, load them safely with positions, check them against the schema, make Moves."""

from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from reconciler import schema
from reconciler.diagnostics import Diagnostic, error, warning
from reconciler.errors import ReconcilerError
from reconciler.model import ID_PATTERN, NAME_PATTERN, sha256_of
from reconciler.schema import PathTuple
from reconciler.yamlsafe import Doc, decode, load_all

if TYPE_CHECKING:
    from reconciler.manifest_model import Manifest as Manifest
    from reconciler.manifest_model import Metadata as Metadata
    from reconciler.manifest_model import ServiceSpec as ServiceSpec
    from reconciler.manifest_model import Spec as Spec


def __getattr__(name: str) -> Any:
    """The pydantic models load on first use: `validate` of a plainly valid manifest never needs them."""
    if name in ("Manifest", "Metadata", "ServiceSpec", "Spec"):
        from reconciler import manifest_model

        return getattr(manifest_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

MAX_MANIFEST_BYTES = 1024 * 1024
SUFFIXES = (".yaml", ".yml")


class Move:
    """A schema-valid CustomerMove document and where it came from.

    A move the state already records as applied, read from an unchanged file, is "known": its ids
    come from the state record and its document is parsed only if something asks for it (drift).
    """

    __slots__ = ("name", "digest", "file", "line", "customer", "to_reseller", "location", "file_sha256",
                 "_manifest", "_doc", "_loader", "_allow_large")

    def __init__(self, manifest: Manifest | None, doc: Doc | None, digest: str, *, name: str = "",
                 file: str = "", line: int = 1, customer: str = "", to_reseller: str = "", location: str = "",
                 file_sha256: str | None = None, allow_large: bool | None = None,
                 loader: Callable[[], tuple[Manifest, Doc]] | None = None) -> None:
        self._manifest, self._doc, self._loader = manifest, doc, loader
        self._allow_large = allow_large
        self.digest = digest
        if manifest is not None and doc is not None:
            name, file, line = manifest.metadata.name, doc.file, doc.line
            customer, to_reseller = manifest.spec.customer, manifest.spec.to_reseller
            location, file_sha256 = manifest.spec.location, doc.source_sha256 if doc.siblings == 1 else None
        self.name, self.file, self.line = name, file, line
        self.customer, self.to_reseller, self.location = customer, to_reseller, location
        self.file_sha256 = file_sha256

    def _load(self) -> None:
        if self._manifest is None or self._doc is None:
            assert self._loader is not None
            self._manifest, self._doc = self._loader()

    @property
    def manifest(self) -> Manifest:
        self._load()
        assert self._manifest is not None
        return self._manifest

    @property
    def doc(self) -> Doc:
        if self._doc is not None:
            return self._doc
        self._load()
        assert self._doc is not None
        return self._doc

    @property
    def spec(self) -> Spec:
        return self.manifest.spec

    @property
    def allow_large(self) -> bool:
        """spec.allowLarge; a known move's file is parsed for it only when its bytes might say so."""
        if self._manifest is None and self._allow_large is not None:
            return self._allow_large
        return self.manifest.spec.allow_large

    @property
    def document(self) -> Any:
        return self.doc.data

    def locate(self, d: Diagnostic, path: PathTuple, at_key: bool = False) -> Diagnostic:
        line, col = self.doc.position(path, at_key)
        return d.at(self.file, line, col)


class Known(Protocol):
    """What the state says of an applied move: enough to plan it as a no-op without parsing it."""

    @property
    def digest(self) -> str: ...
    @property
    def file_sha256(self) -> str | None: ...
    @property
    def customer(self) -> str: ...
    @property
    def to_reseller(self) -> str: ...
    @property
    def location(self) -> str | None: ...
    @property
    def line(self) -> int | None: ...


@dataclass(frozen=True)
class Loaded:
    moves: list[Move]
    diagnostics: list[Diagnostic]
    files: int


@dataclass(frozen=True)
class Confine:
    """Where a manifest argument's files must really be (symlinks resolved): the git work tree holding the
    argument, or outside git the directory given, or a file argument's own directory. A symlink pointing
    elsewhere (`moves/x.yaml -> /etc/shadow`) is refused without being read: a plan posted on a pull
    request must never show another file's content."""

    root: str  # a real path
    what: str  # "the git work tree", ...
    _dirs: dict[str, str] = field(default_factory=dict, compare=False, repr=False)  # directory -> its real path

    @classmethod
    def of(cls, arg: str, is_dir: bool) -> Confine:
        here = os.path.abspath(arg if is_dir else os.path.dirname(arg) or ".")
        d = here
        while True:
            if os.path.lexists(os.path.join(d, ".git")):
                return cls(os.path.realpath(d), "the git work tree")
            up = os.path.dirname(d)
            if up == d:
                break
            d = up
        what = "the directory given on the command line" if is_dir else "the directory of the file given"
        return cls(os.path.realpath(here), what)

    def check(self, file: str) -> tuple[str | None, Diagnostic | None]:
        """The file's real path, and why it may not be read (None: it may). Read it by that real path
        (read_raw(real=...)): a link swapped in after this check is then refused, never followed. A link
        loop has no real path (None): reading it by its own path says so."""
        real = self._realpath(file)
        if real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep):
            return (None if os.path.islink(real) else real), None
        return real, error("yaml", f"resolves to {real}, outside {self.what} ({self.root}); not read: a manifest "
                             "must be a file of the repository, not a link out of it").at(file, None, None)

    def _realpath(self, file: str) -> str:
        """os.path.realpath, with each directory resolved once: a file that is no link is its directory's
        real path plus its name (a thousand manifests of one folder cost a thousand lstat calls, not five
        thousand)."""
        head, name = os.path.split(file)
        try:
            if not name or name in (".", "..") or stat.S_ISLNK(os.lstat(file).st_mode):
                return os.path.realpath(file)
        except OSError:
            return os.path.realpath(file)
        real_dir = self._dirs.get(head)
        if real_dir is None:
            real_dir = self._dirs[head] = os.path.realpath(head or ".")
        return os.path.join(real_dir, name)


def discover(paths: Sequence[str]) -> list[str]:
    """Files in argument order; a directory's *.yaml/*.yml recursively, hidden entries skipped, sorted."""
    return [f for f, _ in discover_confined(paths)]


def discover_confined(paths: Sequence[str]) -> list[tuple[str, Confine]]:
    """`discover`, each file with where it must really be."""
    out: list[tuple[str, Confine]] = []
    seen: set[tuple[int, int]] = set()
    overlap = len(paths) > 1  # one directory, walked without following links, never yields a file twice

    def add(path: str, confine: Confine) -> None:
        if overlap:  # `moves moves/a.yaml` or `moves ./moves` reads a.yaml once
            try:
                st = os.stat(path)
            except OSError:  # a dangling link: read_raw says so
                st = os.lstat(path)
            if (st.st_dev, st.st_ino) in seen:
                return
            seen.add((st.st_dev, st.st_ino))
        out.append((path, confine))

    confines: dict[str, Confine] = {}  # per directory of the file arguments: a hook passes every file by name
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            confine = Confine.of(arg, True)
            found: list[tuple[tuple[str, ...], str]] = []
            for root, dirs, files in os.walk(arg, followlinks=False):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                rel = tuple(Path(root).relative_to(arg).parts) if root != arg else ()
                for f in files:
                    if f.startswith(".") or not f.endswith(SUFFIXES):
                        continue
                    found.append(((*rel, f), os.path.join(root, f)))
            for _, full in sorted(found):
                add(full, confine)
        elif p.exists():
            where = os.path.abspath(os.path.dirname(arg) or ".")
            if where not in confines:
                confines[where] = Confine.of(arg, False)
            add(arg, confines[where])
        else:
            raise ReconcilerError(f"{arg}: no such file or directory",
                                  hint="pass manifest files or folders that hold them")
    return out


def read_raw(file: str, limit: int = MAX_MANIFEST_BYTES, real: str | None = None) -> tuple[bytes | None,
                                                                                        list[Diagnostic]]:
    """The bytes of `file` (at most `limit`), or why not. With `real` (its checked real path) that path is
    opened instead, refusing a symbolic link there: what is read is what Confine checked."""
    try:
        # Opened without blocking, then checked: a FIFO or a device would block or never end.
        fd = os.open(file if real is None else real, os.O_RDONLY | os.O_NONBLOCK | (0 if real is None else
                                                                                    os.O_NOFOLLOW))
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None, [error("yaml", "not a regular file").at(file, None, None)]
            # Asked for its size plus one (asking for the limit allocates a MiB per file), and on to the
            # limit plus one if it grew meanwhile: never more than that is read.
            want = min(st.st_size, limit) + 1
            raw = fh.read(want)
            if len(raw) == want and want <= limit:
                raw += fh.read(limit + 1 - want)
    except OSError as e:
        if real is not None and e.errno == errno.ELOOP:  # Confine checked no link there (a loop has no real)
            return None, [error("yaml", "became a symbolic link after it was checked; not read (is something "
                                        "changing the repository while reconcile runs?)").at(file, None, None)]
        return None, [error("yaml", f"cannot read: {e.strerror or e}").at(file, None, None)]
    if len(raw) > limit:
        return None, [error("yaml", f"file is larger than {limit // 1024} KiB; split it into smaller manifests")
                      .at(file, 1, 1)]
    return raw, []


def read_docs(file: str, limit: int = MAX_MANIFEST_BYTES,
              raw: bytes | None = None) -> tuple[list[Doc], list[Diagnostic]]:
    """Documents of one file, or the yaml diagnostics that stop it."""
    if raw is None:
        raw, problems = read_raw(file, limit)
        if raw is None:
            return [], problems
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
    digest = hashlib.sha256(raw).hexdigest()
    for d in docs:
        d.source_sha256, d.siblings = digest, len(docs)
    return docs, diags


_ID = re.compile(ID_PATTERN)
_NAME = re.compile(NAME_PATTERN)
_VALUE_TYPES = (str, int, float, bool, type(None))


def _ids(value: Any) -> bool:
    return type(value) is str and len(value) <= 128 and _ID.match(value) is not None


def _keys(value: Any, allowed: frozenset[str], required: frozenset[str] = frozenset()) -> bool:
    return type(value) is dict and value.keys() <= allowed and required <= value.keys()


_TOP = frozenset({"apiVersion", "kind", "metadata", "spec"})
_META = frozenset({"name", "ticket", "description"})
_SPEC = frozenset({"customer", "toReseller", "location", "services", "allowLarge"})
_SPEC_REQUIRED = frozenset({"customer", "toReseller", "location"})
_SERVICE = frozenset({"plan", "sals", "properties"})


def plainly_valid(data: Any) -> bool:
    """True only for a manifest that both the pydantic models and schemas/move.schema.json accept (their
    intersection, checked by hand: no pydantic or jsonschema import). False means "ask them": every other
    document takes the full path, so no check and no message is lost. Guarded by tests/test_manifests.py."""
    if not _keys(data, _TOP, _TOP) or data["apiVersion"] != "reconciler/v1" or data["kind"] != "CustomerMove" \
            or type(data["apiVersion"]) is not str or type(data["kind"]) is not str:
        return False
    meta, spec = data["metadata"], data["spec"]
    if not _keys(meta, _META, frozenset({"name"})):
        return False
    name = meta["name"]
    if type(name) is not str or len(name) > 63 or _NAME.match(name) is None:
        return False
    for key, limit in (("ticket", 200), ("description", 10000)):
        if key in meta and (type(meta[key]) is not str or len(meta[key]) > limit):
            return False
    if not _keys(spec, _SPEC, _SPEC_REQUIRED) or not all(_ids(spec[k]) for k in _SPEC_REQUIRED):
        return False
    if "allowLarge" in spec and type(spec["allowLarge"]) is not bool:
        return False
    services = spec.get("services", {})
    if type(services) is not dict:
        return False
    for sid, svc in services.items():
        if not _ids(sid) or not _keys(svc, _SERVICE):
            return False
        if "plan" in svc and not _ids(svc["plan"]):
            return False
        sals, props = svc.get("sals", {}), svc.get("properties", {})
        if type(sals) is not dict or not all(_ids(k) and _ids(v) for k, v in sals.items()):
            return False
        if type(props) is not dict or not all(_ids(k) and type(v) in _VALUE_TYPES for k, v in props.items()):
            return False
        if any(type(v) is int and abs(v) >= 2 ** 63 or type(v) is float and not math.isfinite(v)
               for v in props.values()):
            return False
    return True


def _to_move(doc: Doc) -> Move | list[Diagnostic]:
    if plainly_valid(doc.data):  # the models are built only when something reads the manifest
        spec = doc.data["spec"]
        return Move(None, doc, sha256_of(doc.data), name=doc.data["metadata"]["name"], file=doc.file, line=doc.line,
                    customer=spec["customer"], to_reseller=spec["toReseller"], location=spec["location"],
                    file_sha256=doc.source_sha256 if doc.siblings == 1 else None,
                    allow_large=spec.get("allowLarge", False), loader=lambda: (_model(doc.data), doc))
    return _checked_move(doc)


def _model(data: Any) -> Manifest:
    from reconciler.manifest_model import Manifest

    return Manifest.model_validate(data)


def _checked_move(doc: Doc) -> Move | list[Diagnostic]:
    from reconciler.manifest_model import ValidationError

    try:
        manifest = _model(doc.data)
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
    return Move(manifest, doc, sha256_of(doc.data))


def load(paths: Sequence[str], known: Mapping[str, Mapping[str, Known]] | None = None) -> Loaded:
    """Load every manifest; one bad document never hides the others.

    `known` (sha256 of a file's bytes -> name -> what the state recorded) lets a file whose bytes are
    exactly those of an applied move skip parsing, wherever it lies and however it is named on the
    command line: a repository of 10,000 applied manifests plans in a moment.
    """
    files = discover_confined(paths)
    moves: list[Move] = []
    diags: list[Diagnostic] = []
    for f, confine in files:
        real, outside = confine.check(f)
        if outside is not None:
            diags.append(outside)
            continue
        raw, problems = read_raw(f, real=real)
        if raw is None:
            diags.extend(problems)
            continue
        fast = _known_move(f, raw, known.get(hashlib.sha256(raw).hexdigest()) if known else None)
        if fast is not None:
            moves.append(fast)
            continue
        docs, problems = read_docs(f, raw=raw)
        diags.extend(problems)
        for doc in docs:
            got = _to_move(doc)
            if isinstance(got, Move):
                moves.append(got)
            else:
                diags.extend(got)
    unique, dup_diags = split_duplicates(moves)
    return Loaded(moves=unique, diagnostics=diags + dup_diags, files=len(files))


def _known_move(file: str, raw: bytes, known: Mapping[str, Known] | None) -> Move | None:
    if not known or len(known) != 1:
        return None
    (name, k), = known.items()
    if k.file_sha256 is None or k.location is None:
        return None

    def parse() -> tuple[Manifest, Doc]:
        docs, _ = read_docs(file, raw=raw)
        got = _to_move(docs[0])
        assert isinstance(got, Move)
        return got.manifest, got.doc

    # Without the key's letters (and no escape that could spell them), allowLarge is surely unset.
    allow_large = False if b"allowLarge" not in raw and b"\\" not in raw else None
    return Move(None, None, k.digest, name=name, file=file, line=k.line or 1, customer=k.customer,
                to_reseller=k.to_reseller, location=k.location, file_sha256=k.file_sha256,
                allow_large=allow_large, loader=parse)


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
