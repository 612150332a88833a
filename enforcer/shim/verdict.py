"""What a front end does with a matcher verdict, and the event it records: one mapping for both.

The DNS and proxy front ends ask the same `Matcher` and must agree on what its answer means:

* `event_action` turns a `Verdict` into the `EventAction` recorded: Block is blocked, Warn is
  warned, Audit and Alert are audited (both let traffic through and record it), Allowed and
  ungoverned names are allowed. The proxy adds one outcome of its own, bypassed (a Warn the user
  chose to continue past).
* `stricter` orders outcomes (allowed < audited < bypassed < warned < blocked), for a
  connection that carries two names (a CONNECT host and a TLS server name) and takes the most
  restrictive.
* `Ruling` is the proxy's outcome for one connection: the action and the name and verdict that
  decided it.
* `EventRecorder` builds the `NetworkEvent` of one DNS answer or proxied connection and gives it
  to the front end's ``on_event`` callback, which must never stop traffic by raising;
  `EventBatch` lets the DNS listener hand over one pass's events at once.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import NamedTuple, Protocol

from enforcer.decide.matcher import Verdict
from enforcer.models import Action, EventAction, NetworkEvent

log = logging.getLogger(__name__)

EventSink = Callable[[NetworkEvent], None]
"""Receives each event, on the event loop: it must not block."""


class EventBatch(Protocol):
    """An event sink that can take the events of several answers at once (the reporter).

    A front end that answers many queries in one event-loop pass calls `hold` before them and
    `commit` after them, *before sending any of their answers*: the sink writes their events
    with one system call, and each still reaches the disk before its answer leaves.
    """

    def hold(self) -> None:
        """Keep the events that follow until `commit`."""

    def commit(self) -> None:
        """Write the events kept since `hold`; never raises."""


_EVENT_ACTIONS: dict[Action | None, EventAction] = {
    None: EventAction.ALLOWED,
    Action.ALLOWED: EventAction.ALLOWED,
    Action.BLOCK: EventAction.BLOCKED,
    Action.WARN: EventAction.WARNED,
    Action.AUDIT: EventAction.AUDITED,
    Action.ALERT: EventAction.AUDITED,
}
_RANK = {
    EventAction.ALLOWED: 0,
    EventAction.AUDITED: 1,
    EventAction.BYPASSED: 2,
    EventAction.WARNED: 3,
    EventAction.BLOCKED: 4,
}
DENIED = frozenset({EventAction.BLOCKED, EventAction.WARNED})
"""Outcomes that stop the traffic (a warned connection waits for the user's "Continue")."""


def event_action(verdict: Verdict) -> EventAction:
    """What happens to traffic to a name with this verdict (before any bypass)."""
    return _EVENT_ACTIONS[verdict.action]


def stricter(a: EventAction, b: EventAction) -> bool:
    """Whether outcome `a` is more restrictive than `b`."""
    return _RANK[a] > _RANK[b]


class Ruling(NamedTuple):
    """The outcome for a proxied connection and the name and verdict that decided it."""

    action: EventAction
    name: str
    verdict: Verdict

    @property
    def denied(self) -> bool:
        """The connection is refused (blocked, or warned until the user continues)."""
        return self.action in DENIED


class EventRecorder:
    """Builds a front end's events and hands them to its sink; a failing sink is logged only."""

    __slots__ = ("sink", "source", "user")

    def __init__(self, source: str, sink: EventSink, user: str = "") -> None:
        self.source = source
        """Which front end records: "dns" or "proxy"."""
        self.sink = sink
        self.user = user

    def record(
        self,
        name: str,
        action: EventAction,
        verdict: Verdict,
        *,
        when: dt.datetime | None = None,
        client_ip: str = "",
        client_port: int = 0,
        dest_ip: str = "",
        dest_port: int = 0,
        bytes_up: int = 0,
        bytes_down: int = 0,
        user: str | None = None,
        pid: int = 0,
        process_name: str = "",
        process_path: str = "",
    ) -> None:
        """Record what happened to traffic for `name`, decided by `verdict` (now by default);
        `user`, `pid` and the process name the OS user and process that made it, when known
        (the recorder's user otherwise)."""
        event = NetworkEvent(
            time=when or dt.datetime.now(dt.UTC),
            source=self.source,
            domain=name,
            action=action,
            indicator=verdict.indicator,
            app_id=verdict.app_id,
            dest_ip=dest_ip,
            dest_port=dest_port,
            bytes_up=bytes_up,
            bytes_down=bytes_down,
            user=self.user if user is None else user,
            client_ip=client_ip,
            client_port=client_port,
            pid=pid,
            process_name=process_name,
            process_path=process_path,
        )
        try:
            self.sink(event)
        except Exception:  # a broken event sink must not stop name resolution or a connection
            log.exception("%s event sink failed", self.source)
