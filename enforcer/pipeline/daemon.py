"""`enforcer daemon`: APScheduler wiring. Which job runs when; the policy work is `enforcer.pipeline.run`.

Jobs: ``reconcile`` (every `reconcile_interval` seconds, and at once when a policy file changes),
then the sinks whose target is behind the store's revision; ``expire`` (every `expire_interval`
seconds: expired indicators, old raw events); ``discovery`` (every `discovery_interval` seconds:
device events into rollups); ``sink_check`` (every `sink_check_interval` seconds: each sink's
live content against the store, drift repaired); ``edge`` (once, at the instant the policy set
next changes by itself: a schedule's window edge, an exception's expiry; a reconcile then, so
the change reaches devices as fast as an edited file). Only the leader (see
`enforcer.store.lock`) works. A policy set with errors is logged once and skipped: the last
good state stays in force.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from enforcer.config import Settings
from enforcer.discovery.continuous import process_events
from enforcer.discovery.forward import forward_pending, receivers_from
from enforcer.errors import MassDeletionRefused, PolicySetError
from enforcer.pipeline.author import policy_author
from enforcer.pipeline.load import discovery_policy
from enforcer.pipeline.metrics import (
    PLAN_CHANGES,
    RECONCILE_SECONDS,
    RECONCILE_TOTAL,
    SINK_CHECKS,
    SINK_DRIFT,
    SINK_OVERFLOW,
)
from enforcer.pipeline.run import (
    SinkCheck,
    check_sinks,
    expand_state,
    load_state,
    plan_and_apply,
    run_sinks,
)
from enforcer.policy.loader import directory_digest
from enforcer.sinks.base import SinkResult
from enforcer.store.alerts import prune_alerts
from enforcer.store.audit import prune_audit
from enforcer.store.events import prune_events
from enforcer.store.expiry import expire
from enforcer.store.feed import current_revision
from enforcer.store.lock import LeaderLock

log = structlog.get_logger("enforcer.pipeline.daemon")


@dataclass
class TickResult:
    """What one reconcile tick did (for tests and logs)."""

    outcome: str
    """standby, unchanged, policy_error, refused (a mass deletion), no_changes, applied,
    store_error."""
    revision: int = 0
    changes: int = 0
    sinks: tuple[SinkResult, ...] = ()
    """The sinks this tick ran: those whose target was behind the store's revision."""


class Daemon:
    """The reconcile loop's state between ticks: the last good policy digest and revision, and
    the revision each sink last applied."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.lock = LeaderLock(engine)
        self._last: tuple[str, int] | None = None
        self._next_expiry: dt.datetime | None = None
        self._failed_digest: str | None = None
        self._refused_digest: str | None = None
        self._sink_revisions: dict[str, int] = {}
        self._tick_lock = threading.Lock()
        self.stop_event = threading.Event()
        self.scheduler: BackgroundScheduler | None = None
        """Set by `run`; the edge job is added to it."""

    # --- jobs ---------------------------------------------------------------------------

    def reconcile_tick(self, now: dt.datetime | None = None) -> TickResult:
        """Reload the policy set and apply it if anything changed, then bring every sink up to
        the store's revision. Never raises."""
        with self._tick_lock:
            started = time.monotonic()
            try:
                result = self._reconcile(now or dt.datetime.now(dt.UTC))
                if result.outcome != "standby" and self.settings.sinks:
                    result.sinks = self._update_sinks()
            except SQLAlchemyError as exc:
                log.error("store_unavailable", error=str(exc).splitlines()[0])
                self.lock.release()
                result = TickResult("store_error")
            RECONCILE_TOTAL.labels(result.outcome).inc()
            if result.outcome in ("applied", "no_changes"):
                RECONCILE_SECONDS.observe(time.monotonic() - started)
            return result

    def _reconcile(self, now: dt.datetime) -> TickResult:
        if not self.lock.acquire():
            log.debug("standby", reason="another daemon holds the leader lock")
            return TickResult("standby")
        policy_dir = self.settings.policy_dir
        if self.settings.policy_git_pull:
            self._git_pull(policy_dir)
        try:
            digest = directory_digest(policy_dir)
        except (OSError, PolicySetError) as exc:
            log.error("policy_unreadable", policy_dir=str(policy_dir), error=str(exc))
            return TickResult("policy_error")
        with self.engine.connect() as conn:
            revision = current_revision(conn)
        expired = self._next_expiry is not None and now >= self._next_expiry
        if self._last == (digest, revision) and not expired:
            return TickResult("unchanged", revision)
        try:
            state = load_state(policy_dir, now=now)
        except PolicySetError as exc:
            if self._failed_digest != digest:
                log.error(
                    "policy_rejected",
                    errors=[e.as_dict() for e in exc.errors],
                    message="the policy set has errors; the last good state stays in force",
                )
                self._failed_digest = digest
            return TickResult("policy_error", revision)
        self._failed_digest = None
        # The mass-deletion brake guards against edited (or lost) policy files; the deletions
        # that unchanged files make at a window edge or an expiry are what they asked for.
        same_files = self._last is not None and self._last[0] == digest
        author = policy_author(policy_dir)
        try:
            plan, revision = plan_and_apply(
                self.engine,
                expand_state(state),
                actor=author.actor,
                details=author.details,
                max_delete_share=1.0 if same_files else self.settings.max_delete_share,
            )
        except MassDeletionRefused as exc:
            if self._refused_digest != digest:
                log.error("plan_refused_mass_deletion", message=str(exc))
                self._refused_digest = digest
            return TickResult("refused", revision)
        self._refused_digest = None
        self._last = (digest, revision)
        self._next_expiry = state.next_expiry()
        self._schedule_edge(self._next_expiry)
        if not plan.has_changes:
            return TickResult("no_changes", revision)
        counts = {a.name.lower(): n for a, n in plan.counts.items()}
        for action, count in counts.items():
            PLAN_CHANGES.labels(action).set(count)
        log.info(
            "plan_applied",
            revision=revision,
            **counts,
            conflicts=len(plan.conflicts),
            policy_digest=digest[:12],
            apps=sorted({c.app_id for c in plan.changes if c.app_id})[:50],
        )
        return TickResult("applied", revision, len(plan.changes))

    def _schedule_edge(self, when: dt.datetime | None) -> None:
        """Reconcile again at `when`, the instant the policy set next changes by itself, rather
        than at the next interval tick (which may be minutes later)."""
        if self.scheduler is None or when is None:
            return
        self.scheduler.add_job(
            self.reconcile_tick, "date", run_date=when, id="edge", replace_existing=True,
            max_instances=1, misfire_grace_time=None,
        )  # fmt: skip
        log.info("next_policy_edge", at=when.isoformat())

    def _update_sinks(self) -> tuple[SinkResult, ...]:
        """Run each configured sink whose last good run was at another revision than the store's.

        Whatever moved the revision (a policy apply, a manual indicator, an expiry) reaches the
        sinks on the next tick, and a sink that failed is retried on every tick until it succeeds.
        A run that completed with entries the target refused counts as done: the same input
        would be refused again (the refusals are in its result and its log line).
        """
        with self.engine.connect() as conn:
            revision = current_revision(conn)
        behind = [n for n in self.settings.sinks if self._sink_revisions.get(n) != revision]
        if not behind:
            return ()
        # Sinks never raise: a failing one is logged and keeps its target's last good state.
        results = run_sinks(self.settings, self.engine, behind)
        for result in results:
            if not result.error:
                self._sink_revisions[result.sink] = result.revision
                SINK_OVERFLOW.labels(result.sink).set(result.overflow)
        return tuple(results)

    def check_tick(self) -> list[SinkCheck]:
        """Compare each sink's live content with the store and repair what drifted (leader
        only; every `sink_check_interval` seconds). Never raises."""
        if not self.settings.sinks or not self.lock.acquire():
            return []
        with self._tick_lock:  # not while a reconcile tick applies the same sinks
            try:
                checks = check_sinks(self.settings, self.engine, repair=True)
            except SQLAlchemyError as exc:
                log.error("store_unavailable", job="sink_check", error=str(exc).splitlines()[0])
                return []
        for check in checks:
            outcome = "error" if check.error else "in_sync"
            if check.drift and not check.error:
                outcome = "repaired"
                self._sink_revisions[check.sink] = check.revision
            SINK_CHECKS.labels(check.sink, outcome).inc()
            if not check.error or check.repaired is not None:
                SINK_DRIFT.labels(check.sink).set(len(check.drift))
        return checks

    def expire_tick(self, now: dt.datetime | None = None) -> int:
        """Delete indicators whose expirationTime has passed (leader only). Never raises."""
        if not self.lock.acquire():
            return 0
        try:
            count, revision = expire(self.engine, now or dt.datetime.now(dt.UTC))
        except SQLAlchemyError as exc:
            log.error("store_unavailable", job="expire", error=str(exc).splitlines()[0])
            return 0
        if count:
            log.info("indicators_expired", count=count, revision=revision)
        cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(
            days=self.settings.event_retention_days
        )
        try:
            pruned = prune_events(self.engine, cutoff)
        except SQLAlchemyError as exc:
            log.error("store_unavailable", job="retention", error=str(exc).splitlines()[0])
            pruned = 0
        if pruned:
            log.info("events_pruned", count=pruned, older_than=cutoff.isoformat())
        alert_cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(
            days=self.settings.alert_retention_days
        )
        try:
            dropped = prune_alerts(self.engine, alert_cutoff)
        except SQLAlchemyError as exc:
            log.error("store_unavailable", job="alert_retention", error=str(exc).splitlines()[0])
            dropped = 0
        if dropped:
            log.info("alerts_pruned", count=dropped, older_than=alert_cutoff.isoformat())
        self._prune_audit(now or dt.datetime.now(dt.UTC))
        return count

    def _prune_audit(self, now: dt.datetime) -> None:
        """Drop audit rows past ``audit_retention_days`` (0: never), recording the pruning."""
        days = self.settings.audit_retention_days
        if not days:
            return
        cutoff = now - dt.timedelta(days=days)
        try:
            pruned = prune_audit(self.engine, cutoff, actor="daemon", now=now)
        except SQLAlchemyError as exc:
            log.error("store_unavailable", job="audit_retention", error=str(exc).splitlines()[0])
            return
        if pruned:
            log.info("audit_pruned", count=pruned, older_than=cutoff.isoformat())

    def discovery_tick(self) -> int:
        """Roll up the network events devices reported since the last run, check the alert
        policies, and forward the new alerts to the configured receivers (leader only)."""
        if not self.lock.acquire():
            return 0
        total = 0
        try:
            catalog, policies = discovery_policy(self.settings.policy_dir)
            while done := process_events(self.engine, catalog, policies=policies):
                total += done
        except SQLAlchemyError as exc:
            log.error("store_unavailable", job="discovery", error=str(exc).splitlines()[0])
        if total:
            log.info("events_rolled_up", count=total)
        try:  # the alerts raised now, and any a receiver did not take before
            forward_pending(
                self.engine,
                receivers_from(self.settings),
                attempts=self.settings.alert_forward_attempts,
            )
        except SQLAlchemyError as exc:
            log.error("store_unavailable", job="alert_forward", error=str(exc).splitlines()[0])
        return total

    def _git_pull(self, policy_dir: Path) -> None:
        try:
            done = subprocess.run(
                ["git", "-C", str(policy_dir), "pull", "--ff-only", "--quiet"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("git_pull_failed", error=str(exc))
            return
        if done.returncode:
            log.error("git_pull_failed", error=done.stderr.strip()[:500])

    # --- wiring ---------------------------------------------------------------------------

    def run(self) -> None:
        """Run until SIGTERM/SIGINT; the running job finishes before the process exits."""
        scheduler = BackgroundScheduler(timezone=dt.UTC)
        self.scheduler = scheduler
        now = dt.datetime.now(dt.UTC)
        scheduler.add_job(
            self.reconcile_tick, "interval", seconds=self.settings.reconcile_interval,
            id="reconcile", next_run_time=now, max_instances=1, coalesce=True,
        )  # fmt: skip
        scheduler.add_job(
            self.discovery_tick,
            "interval",
            seconds=self.settings.discovery_interval,
            id="discovery",
            max_instances=1,
            coalesce=True,
        )
        scheduler.add_job(
            self.expire_tick, "interval", seconds=self.settings.expire_interval,
            id="expire", max_instances=1, coalesce=True,
        )  # fmt: skip
        if self.settings.sink_check_interval and self.settings.sinks:
            scheduler.add_job(
                self.check_tick, "interval", seconds=self.settings.sink_check_interval,
                id="sink_check", max_instances=1, coalesce=True,
            )  # fmt: skip
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        # SIGHUP (a closed terminal, `systemctl reload`, log rotation) must not kill the
        # daemon: it reconciles at once instead (the policy files are re-read on every tick;
        # settings are read at start only).
        signal.signal(
            signal.SIGHUP,
            lambda signum, _frame: self._on_hangup(scheduler),
        )
        log.info(
            "daemon_started",
            policy_dir=str(self.settings.policy_dir),
            store=self.engine.url.render_as_string(hide_password=True),
            reconcile_interval=self.settings.reconcile_interval,
            watch=self.settings.watch_policies,
        )
        scheduler.start()
        if self.settings.watch_policies:
            threading.Thread(
                target=self._watch, args=(scheduler,), name="policy-watch", daemon=True
            ).start()
        self.stop_event.wait()
        log.info("daemon_stopping")
        scheduler.shutdown(wait=True)
        self.lock.release()
        log.info("daemon_stopped")

    def _on_hangup(self, scheduler: BackgroundScheduler) -> None:
        log.info("signal_received", signal="SIGHUP", action="reconcile now")
        with contextlib.suppress(Exception):  # the scheduler may be stopping
            scheduler.modify_job("reconcile", next_run_time=dt.datetime.now(dt.UTC))

    def _on_signal(self, signum: int, _frame: Any) -> None:
        log.info("signal_received", signal=signal.Signals(signum).name)
        self.stop_event.set()

    def _watch(self, scheduler: BackgroundScheduler) -> None:
        """Trigger a reconcile as soon as a policy file changes (no waiting for the next tick)."""
        from watchfiles import watch

        directory = self.settings.policy_dir
        try:
            for _changes in watch(directory, stop_event=self.stop_event, debounce=50, step=20):
                log.info("policy_changed", policy_dir=str(directory))
                scheduler.modify_job("reconcile", next_run_time=dt.datetime.now(dt.UTC))
        except (OSError, RuntimeError) as exc:
            log.warning("policy_watch_stopped", error=str(exc))
