"""A webhook that answers 503 is retried with a doubling back-off (issue 15: forwarding
retried), against the local receiver of test_forward.py. On both back ends."""

from __future__ import annotations

from sqlalchemy import Engine

from enforcer.discovery.forward import Webhook, deliver
from enforcer.store.alerts import pending_forward
from tests.discovery.test_forward import SECRET, Hook, _raise, hook

__all__ = ["hook"]  # the receiver fixture, shared with test_forward.py


def test_retries_wait_twice_as_long_each_time(engine: Engine, hook: Hook) -> None:
    _raise(engine, "mega")
    with engine.connect() as conn:
        alerts = pending_forward(conn)
    hook.fail_first = 3
    waits: list[float] = []
    assert deliver(Webhook(hook.url, SECRET), alerts, attempts=4, backoff=0.5, sleep=waits.append)
    assert hook.answers == [503, 503, 503, 204]
    assert waits == [0.5, 1.0, 2.0]
