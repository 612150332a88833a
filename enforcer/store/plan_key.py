"""The store's plan-file key: `enforcer plan --out` signs a saved plan with it (HMAC-SHA256) and
`enforcer apply PLANFILE` checks the signature, so only a plan made against this store, and not
edited since, is applied. The key is made on first use and kept in `store_meta`; whoever can read
the store's database can read it, which is who can change the indicators anyway.
"""

from __future__ import annotations

import secrets

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from enforcer.store.tables.indicators import META

_KEY = "plan_file_key"


def plan_key(engine: Engine) -> bytes:
    """The store's plan-file key, made on first use (two processes making it agree on one)."""
    with engine.connect() as conn:
        value = conn.execute(select(META.c.value).where(META.c.key == _KEY)).scalar()
    if value is None:
        try:
            with engine.begin() as conn:
                conn.execute(insert(META).values(key=_KEY, value=secrets.token_hex(32)))
        except IntegrityError:
            pass  # another process made it first: read theirs
        with engine.connect() as conn:
            value = conn.execute(select(META.c.value).where(META.c.key == _KEY)).scalar_one()
    return bytes.fromhex(value)
