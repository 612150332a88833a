"""Discovery entities: the ordinal of each device, user and address name the rollups have seen.

The rollups' bitsets (`enforcer.store.encoding`) hold these ordinals; they are numbered per kind
on first sight, inside the transaction that merges the rollup using them.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, any_, bindparam, cast, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY

from enforcer.store.tables.discovery import ENTITY


def storable(text: str) -> str:
    """Text a log carried, as every back end can store it: PostgreSQL refuses NUL characters."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def entity_ordinals(conn: Connection, kind: str, names: Iterable[str]) -> dict[str, int]:
    """Ordinals of names of a kind, numbering the new ones (inside the caller's transaction)."""
    originals = set(names)
    clean = {name: storable(name) for name in originals}
    by_clean = _entity_ordinals(conn, kind, clean.values())
    return {name: by_clean[clean[name]] for name in originals}


def _entity_ordinals(conn: Connection, kind: str, names: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(names))
    found: dict[str, int] = {}
    query = select(ENTITY.c.name, ENTITY.c.ordinal).where(ENTITY.c.kind == kind)
    if conn.dialect.name == "postgresql":  # one array parameter (see `rollups._by_keys`)
        names_param = cast(bindparam("names", wanted), ARRAY(ENTITY.c.name.type))
        found.update(
            {n: o for n, o in conn.execute(query.where(ENTITY.c.name == any_(names_param)))}
        )
    else:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            found.update({n: o for n, o in conn.execute(query.where(ENTITY.c.name.in_(chunk)))})
    new = [n for n in wanted if n not in found]
    if new:
        top = conn.execute(select(func.max(ENTITY.c.ordinal)).where(ENTITY.c.kind == kind)).scalar()
        start_at = -1 if top is None else int(top)
        fresh = {n: start_at + 1 + i for i, n in enumerate(new)}
        conn.execute(
            insert(ENTITY), [{"kind": kind, "name": n, "ordinal": o} for n, o in fresh.items()]
        )
        found.update(fresh)
    return found


def entity_names(
    conn: Connection, kind: str, ordinals: Iterable[int] | None = None
) -> dict[int, str]:
    """Names of a kind by ordinal (all of them, or those of `ordinals`)."""
    query = select(ENTITY.c.ordinal, ENTITY.c.name).where(ENTITY.c.kind == kind)
    if ordinals is not None:
        wanted = list(ordinals)
        if not wanted:
            return {}
        query = query.where(ENTITY.c.ordinal.in_(wanted))
    return {o: n for o, n in conn.execute(query)}


def entity_ordinal(conn: Connection, kind: str, name: str) -> int | None:
    """The ordinal of one name (None: never seen)."""
    value = conn.execute(
        select(ENTITY.c.ordinal).where(ENTITY.c.kind == kind, ENTITY.c.name == name)
    ).scalar()
    return None if value is None else int(value)


def entity_search(conn: Connection, kind: str, text: str) -> dict[int, str]:
    """Names of a kind that contain `text` (any case), by ordinal."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    query = select(ENTITY.c.ordinal, ENTITY.c.name).where(
        ENTITY.c.kind == kind, func.lower(ENTITY.c.name).like(f"%{escaped}%", escape="\\")
    )
    return {o: n for o, n in conn.execute(query)}
