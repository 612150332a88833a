"""The events search as the edges take it: filters given as text (a CLI option, a query
parameter, a console form) turned into the store's `EventSearch`, and stored events turned into
the `StoredEvent` wire shape that the API, the CLI's ``--json`` and the console all show.
"""

from __future__ import annotations

import datetime as dt

from enforcer.errors import PermanentError
from enforcer.models import EventAction
from enforcer.store.event_search import EventSearch, FoundEvent
from enforcer.wire.events import StoredEvent, parse_time

ACTIONS = ", ".join(a.value for a in EventAction)


class SearchFieldError(PermanentError):
    """One filter of an events search cannot be read: which one, and why."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def event_search(
    *,
    now: dt.datetime,
    device: str | None = None,
    user: str | None = None,
    process: str | None = None,
    domain: str | None = None,
    action: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> EventSearch:
    """The search the filters describe (an empty filter matches everything); a
    `SearchFieldError` naming the first filter that is not readable."""
    if action:
        try:
            action = EventAction(action.strip().lower()).value
        except ValueError:
            raise SearchFieldError("action", f"{action!r} is not one of {ACTIONS}") from None
    times: dict[str, dt.datetime | None] = {}
    for name, text in (("since", since), ("until", until)):
        try:
            times[name] = parse_time(text, now=now) if text else None
        except ValueError as exc:
            raise SearchFieldError(name, str(exc)) from None
    return EventSearch(
        device=device or None,
        user=user or None,
        process=process or None,
        domain=domain or None,
        action=action or None,
        since=times["since"],
        until=times["until"],
    )


def stored_event(found: FoundEvent) -> StoredEvent:
    """A found event in its wire shape."""
    event = found.event
    return StoredEvent(
        id=found.id,
        device_id=found.device_id,
        time=event.time,
        hostname=event.hostname,
        user=event.user,
        local_ip=event.local_ip,
        domain=event.domain,
        dest_ip=event.dest_ip,
        dest_port=event.dest_port,
        bytes_up=event.bytes_up,
        bytes_down=event.bytes_down,
        action=EventAction(event.action),
        indicator=event.indicator,
        application=event.app_id,
        source=event.source,
        pid=event.pid,
        process_name=event.process_name,
        process_path=event.process_path,
    )
