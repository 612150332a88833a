"""Reading the catalog from YAML, and the immutable `Catalog` the rest of Enforcer queries.

The bundled catalog lives in ``enforcer/catalog/data/*.yaml``, one file per category, each a
top-level list of apps. `load_catalog()` reads it once per process (it is cached). An error in a
file raises `CatalogError` naming the file, the line and the field, for example::

    enforcer/catalog/data/file-sharing.yaml:12: [3].category: 'filesharing' is not one of ...

Files are parsed with ruamel.yaml's fast safe loader; only when a file turns out to be invalid is
it parsed again with the round-trip loader, which knows the line of every node. Parsing the
bundled files still takes a good part of a short command's run (`enforcer explain`), so what
they parse to is kept as JSON in the user's cache directory, under a digest of their text: the
next process reads the JSON instead and validates the apps as always. A cache that cannot be
read or written is simply not used.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import ruamel.yaml
from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from enforcer.catalog.model import App, normalize_domain

DATA_DIR = Path(__file__).parent / "data"
"""Where the bundled catalog's YAML files are."""


class CatalogError(Exception):
    """A catalog file or a set of apps is invalid; carries where, for a human to fix it."""

    def __init__(
        self, message: str, *, file: str = "", line: int | None = None, field: str = ""
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        where = file + (f":{line}" if file and line is not None else "")
        parts = [part for part in (where, field, message) if part]
        super().__init__(": ".join(parts))


class UnknownAppError(KeyError):
    """No app has this id; the message suggests the closest ids."""

    def __init__(self, app_id: str, suggestions: Iterable[str] = ()) -> None:
        self.app_id = app_id
        self.suggestions = tuple(suggestions)
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(app_id)
        self.message = f"unknown app {app_id!r}{hint}"

    def __str__(self) -> str:
        return self.message


class Catalog:
    """An immutable set of apps, indexed by id and by domain.

    Iteration and `apps` follow id order. A domain covers itself and every subdomain, so
    `apps_for_domain("eu.files.example.com")` finds an app that lists ``example.com``.
    """

    __slots__ = ("_apps", "_owners")

    def __init__(self, apps: Iterable[App] = ()) -> None:
        by_id: dict[str, App] = {}
        for app in apps:
            if app.id in by_id:
                raise CatalogError(f"app id {app.id!r} is defined twice")
            by_id[app.id] = app
        self._apps = MappingProxyType(dict(sorted(by_id.items())))
        owners: dict[str, list[str]] = {}
        for app in self._apps.values():
            for domain in app.domains:
                owners.setdefault(domain, []).append(app.id)
        self._owners = MappingProxyType({d: tuple(ids) for d, ids in sorted(owners.items())})

    @property
    def apps(self) -> Mapping[str, App]:
        """Every app by id, in id order."""
        return self._apps

    def __contains__(self, app_id: object) -> bool:
        return app_id in self._apps

    def __len__(self) -> int:
        return len(self._apps)

    def __iter__(self) -> Iterator[App]:
        return iter(self._apps.values())

    def __repr__(self) -> str:
        return f"<Catalog of {len(self)} apps>"

    def get(self, app_id: str) -> App:
        """The app with this id; raises `UnknownAppError` with close matches if there is none."""
        try:
            return self._apps[app_id]
        except KeyError:
            close = difflib.get_close_matches(app_id, list(self._apps), n=3, cutoff=0.6)
            raise UnknownAppError(app_id, close) from None

    def search(self, text: str) -> list[App]:
        """Apps whose id, name, vendor, category or domains contain `text`, best first.

        Case-insensitive. Ranked: an exact id, name or domain first, then a match at the start
        of one of them (or of the vendor), then a match anywhere; ties in id order.
        """
        query = text.strip().lower()
        if not query:
            return []
        ranked: list[tuple[int, str, App]] = []
        for app in self._apps.values():
            rank = _search_rank(app, query)
            if rank is not None:
                ranked.append((rank, app.id, app))
        ranked.sort(key=lambda item: item[:2])
        return [app for _, _, app in ranked]

    def by_category(self, category: str) -> list[App]:
        """The apps of one category, in id order."""
        return [app for app in self._apps.values() if app.category == category]

    def with_custom(self, apps: Iterable[App]) -> Catalog:
        """A new catalog with these apps added and marked `custom`.

        Raises `CatalogError` naming the id when a custom app reuses an id already taken.
        """
        added: dict[str, App] = {}
        for app in apps:
            if app.id in self._apps or app.id in added:
                where = "a bundled app" if app.id in self._apps else "another custom app"
                raise CatalogError(
                    f"custom app id {app.id!r} is already used by {where}", field=app.id
                )
            added[app.id] = app if app.custom else app.model_copy(update={"custom": True})
        if not added:
            return self  # immutable: nothing to add, nothing to rebuild
        return Catalog([*self._apps.values(), *added.values()])

    def apps_for_domain(self, domain: str) -> list[App]:
        """Apps listing `domain` or one of its parents, most specific domain first.

        The name is normalized first (case, trailing dot, punycode); a name that is not a valid
        domain owns no app.
        """
        try:
            name = normalize_domain(domain)
        except ValueError:
            return []
        found: dict[str, App] = {}
        labels = name.split(".")
        for start in range(len(labels) - 1):
            for app_id in self._owners.get(".".join(labels[start:]), ()):
                found.setdefault(app_id, self._apps[app_id])
        return list(found.values())

    def domain_owners(self) -> Mapping[str, tuple[str, ...]]:
        """Each domain the catalog lists, mapped to the ids of the apps listing it."""
        return self._owners


def _search_rank(app: App, query: str) -> int | None:
    exact = (app.id, app.name.lower(), *app.domains)
    if query in exact:
        return 0
    if any(value.startswith(query) for value in (*exact, app.vendor.lower())):
        return 1
    fields = (*exact, app.vendor.lower(), app.category)
    if any(query in value for value in fields):
        return 2
    return None


# Two parsers: the safe one uses ruamel.yaml's C extension (ruamel.yaml.clib) when it is installed,
# which reads the bundled catalog about four times faster; the round-trip one keeps line numbers and
# is only used to locate an error once one has been found.
_fast_yaml = YAML(typ="safe")
_located_yaml = YAML(typ="rt", pure=True)


def _display(path: Path) -> str:
    """A file name for messages: ``enforcer/catalog/data/...`` for bundled data, else as given."""
    try:
        return str(path.relative_to(DATA_DIR.parents[2]))
    except ValueError:
        return str(path)


def _line_of(node: Any, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the YAML node at `loc`, or of its nearest ancestor that has one."""
    line: int | None = None
    for key in loc:
        lc = getattr(node, "lc", None)
        try:
            if lc is not None:
                line = (lc.item(key) if isinstance(key, int) else lc.key(key))[0] + 1
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    return line


def _locate(text: str, loc: tuple[int | str, ...]) -> int | None:
    return _line_of(_located_yaml.load(text), loc)


def _field_name(loc: tuple[int | str, ...]) -> str:
    text = ""
    for key in loc:
        text += f"[{key}]" if isinstance(key, int) else f".{key}"
    return text.lstrip(".")


def _parse(text: str, name: str) -> list[Any]:
    try:
        document = _fast_yaml.load(text)
    except MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise CatalogError(f"invalid YAML: {exc.problem}", file=name, line=line) from exc
    except YAMLError as exc:
        raise CatalogError(f"invalid YAML: {exc}", file=name) from exc
    if document is None:
        return []
    if not isinstance(document, list):
        raise CatalogError("expected a list of apps at the top level", file=name, line=1)
    return document


def _validate(entry: Any, index: int, text: str, name: str, custom: bool) -> App:
    if not isinstance(entry, dict):
        line = _locate(text, (index,))
        raise CatalogError("expected an app (a mapping)", file=name, line=line, field=f"[{index}]")
    try:
        return App.model_validate({**entry, "custom": custom})
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = tuple(key for key in error["loc"] if not str(key).startswith("function-"))
        if error["type"] == "missing":
            message, line = "field required", _locate(text, (index,))
        else:
            message = error["msg"].removeprefix("Value error, ")
            line = _locate(text, (index, *loc))
        field = _field_name((index, *loc))
        raise CatalogError(message, file=name, line=line, field=field) from exc


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"cannot read: {exc.strerror}", file=_display(path)) from exc


def _apps(document: list[Any], text: str, name: str, custom: bool) -> list[App]:
    return [_validate(entry, i, text, name, custom) for i, entry in enumerate(document)]


def load_apps(path: Path, *, custom: bool = False) -> list[App]:
    """Read one YAML file holding a list of apps.

    Used for the bundled data and for the custom apps of a policy repository (``custom=True``).
    Raises `CatalogError` with file, line and field on any error.
    """
    name = _display(path)
    text = _read(path)
    return _apps(_parse(text, name), text, name, custom)


def _line_of_app(path: Path, app_id: str) -> int | None:
    document = _located_yaml.load(path.read_text(encoding="utf-8"))
    for index, entry in enumerate(document):
        if entry.get("id") == app_id:
            return _line_of(document, (index,))
    return None


def load_catalog(data_dir: Path | None = None) -> Catalog:
    """Load every ``*.yaml`` file of `data_dir` (default: the bundled catalog) into a Catalog.

    The bundled catalog is read once per process. Raises `CatalogError` for an invalid file or
    an app id defined twice (naming both files).
    """
    if data_dir is None:
        return _bundled()
    return _load_dir(data_dir)


@lru_cache(maxsize=1)
def _bundled() -> Catalog:
    return _load_dir(DATA_DIR, parse_cache=True)


def _load_dir(data_dir: Path, *, parse_cache: bool = False) -> Catalog:
    if not data_dir.is_dir():
        raise CatalogError("catalog data directory not found", file=str(data_dir))
    paths = sorted(data_dir.glob("*.yaml"))
    texts = [_read(path) for path in paths]
    cache = _parse_cache_file(paths, texts) if parse_cache else None
    documents = _read_parse_cache(cache, len(paths))
    parsed = documents is None
    if documents is None:
        documents = [_parse(text, _display(path)) for path, text in zip(paths, texts, strict=True)]
    first_seen: dict[str, Path] = {}
    apps: list[App] = []
    for path, text, document in zip(paths, texts, documents, strict=True):
        for app in _apps(document, text, _display(path), custom=False):
            if app.id in first_seen:
                raise _duplicate(app.id, first_seen[app.id], path)
            first_seen[app.id] = path
            apps.append(app)
    if parsed and cache is not None:
        _write_parse_cache(cache, documents)
    return Catalog(apps)


def _parse_cache_file(paths: list[Path], texts: list[str]) -> Path:
    """Where the parse of these files is cached: named by a digest of their names and text."""
    import platformdirs

    digest = hashlib.sha256(ruamel.yaml.__version__.encode())
    for path, text in zip(paths, texts, strict=True):
        digest.update(f"\0{path.name}\0{len(text)}\0".encode())
        digest.update(text.encode())
    directory = Path(platformdirs.user_cache_dir("enforcer", appauthor=False))
    return directory / f"catalog-{digest.hexdigest()[:32]}.json"


def _read_parse_cache(cache: Path | None, files: int) -> list[list[Any]] | None:
    if cache is None:
        return None
    try:
        documents = json.loads(cache.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(documents, list) or len(documents) != files:
        return None
    if not all(isinstance(document, list) for document in documents):
        return None
    return documents


def _write_parse_cache(cache: Path, documents: list[list[Any]]) -> None:
    """Keep the parse for the next process, if JSON holds it exactly (YAML also has dates)."""
    try:
        text = json.dumps(documents, separators=(",", ":"))
    except (TypeError, ValueError):
        return
    if json.loads(text) != documents:
        return
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".catalog-", dir=cache.parent)
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, cache)  # readers see the old file or the whole new one
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _duplicate(app_id: str, first: Path, second: Path) -> CatalogError:
    """The error for an app id defined twice, naming both places with their lines."""
    line = _line_of_app(second, app_id)
    where = f"{_display(first)}:{_line_of_app(first, app_id)}"
    return CatalogError(
        f"app id {app_id!r} is already defined at {where}",
        file=_display(second),
        line=line,
        field="id",
    )
