"""Device identity end to end: the shim's facts and applied revision reach the real server.

The server is `enforcer serve`'s app under uvicorn on a free port of 127.0.0.1 (see
test_sync.py); the host's facts are read by a function the test controls, so an address change
is a change of a dict, not of the machine's interfaces.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from enforcer import __version__
from enforcer.models import Action, Indicator
from enforcer.shim.report import identity
from enforcer.shim.report.facts import FactsReporter
from enforcer.shim.report.identity import DeviceIdentity, current_facts
from tests.shim.test_sync import Device, LiveServer, eventually, run


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path / "server.sqlite")
    live.start()
    yield live
    live.stop()
    live.engine.dispose()


def _stored(server: LiveServer, device_id: str) -> Any:
    import datetime as dt

    from enforcer.store.devices import list_devices

    with server.engine.connect() as conn:
        found = list_devices(conn, stale_after=dt.timedelta(minutes=10), search=device_id)
    assert len(found) == 1
    return found[0]


@pytest.mark.timeout(60)
def test_facts_are_reported_at_start_and_when_they_change(
    server: LiveServer, tmp_path: Path
) -> None:
    facts = dict(current_facts(), hostname="laptop-7", local_ips=("10.1.0.7",))
    seen: list[DeviceIdentity] = []

    async def scenario() -> None:
        device = Device(server.url, tmp_path / "state")
        reporter = FactsReporter(
            device.session, device.device, on_change=seen.append, read=lambda: dict(facts)
        )
        try:
            assert await reporter.check(), "the first check reports (and enrols)"
            stored = await asyncio.to_thread(_stored, server, device.device.device_id)
            assert stored.device.hostname == "laptop-7"
            assert stored.device.local_ips == ("10.1.0.7",)
            assert stored.device.agent_version == __version__
            assert stored.device.os == facts["os"] and stored.device.os_version
            first_update = stored.device.identity_updated_at
            assert not await reporter.check(), "nothing changed: nothing sent"

            facts["local_ips"] = ("10.2.0.7", "2001:db8::7")
            assert await reporter.check()
            assert seen[-1].local_ips == ("10.2.0.7", "2001:db8::7")
            assert reporter.device.local_ip == "10.2.0.7"
            stored = await asyncio.to_thread(_stored, server, device.device.device_id)
            assert stored.device.local_ips == ("10.2.0.7", "2001:db8::7")
            assert stored.device.identity_updated_at > first_update
        finally:
            await device.close()

    run(scenario())


@pytest.mark.timeout(60)
def test_a_failed_report_is_retried_at_the_next_check(server: LiveServer, tmp_path: Path) -> None:
    async def scenario() -> None:
        device = Device(server.url, tmp_path / "state")
        reporter = FactsReporter(device.session, device.device)
        try:
            await device.session.enrol()
            server.stop()
            assert not await reporter.check() and reporter.failures == 1
            server.start()
            assert await reporter.check() and reporter.failures == 0
        finally:
            await device.close()

    run(scenario())


@pytest.mark.timeout(60)
def test_the_server_records_the_revision_a_device_applied(
    server: LiveServer, tmp_path: Path
) -> None:
    server.add(Indicator("mega.example", Action.BLOCK))

    async def scenario() -> None:
        device = Device(server.url, tmp_path / "state")
        device.start()
        try:
            await eventually(lambda: device.action("mega.example") is Action.BLOCK)
            await asyncio.to_thread(server.add, Indicator("paste.example", Action.BLOCK))
            await eventually(lambda: device.action("paste.example") is Action.BLOCK)
            held = device.client.revision
            stored = device.device.device_id
            await eventually(
                lambda: _stored(server, stored).device.applied_revision == held, within=10
            )
            status = await asyncio.to_thread(_stored, server, device.device.device_id)
            assert status.behind_since is None and not status.stale
            took = status.time_to_enforce
            assert took is not None and took.total_seconds() < 5
        finally:
            await device.close()

    run(scenario())


def test_ipv6_addresses_come_from_the_kernel_table(tmp_path: Path) -> None:
    table = tmp_path / "if_inet6"
    table.write_text(
        "00000000000000000000000000000001 01 80 10 80       lo\n"
        "fe800000000000000000000000000002 02 40 20 80     eth0\n"
        "20010db8000000000000000000000007 02 40 00 80     eth0\n"
    )
    found = identity._linux_ipv6(str(table))
    assert found == ["::1", "fe80::2", "2001:db8::7"]
    assert [ip for ip in found if identity._names_the_host(ip)] == ["2001:db8::7"]


def test_the_facts_fit_the_wire_limits() -> None:
    from enforcer.wire.enrolment import DeviceFacts

    device = identity.DeviceIdentity("d", "", "", "").with_facts(current_facts())
    parsed = DeviceFacts.model_validate(device.facts_body())
    assert parsed.model_dump(by_alias=True) == device.facts_body()
    assert parsed.agent_version == __version__ and parsed.os


@pytest.mark.timeout(60)
def test_a_running_shim_reports_its_identity_and_applied_revision(
    server: LiveServer, tmp_path: Path
) -> None:
    import socket

    from enforcer.shim.agent import Agent, AgentSettings
    from enforcer.shim.dns.answer import DnsSettings
    from tests.shim.test_sync import ENROLL_SECRET

    server.add(Indicator("mega.example", Action.BLOCK))
    settings = AgentSettings(
        server=server.url,
        enroll_secret=ENROLL_SECRET,
        state_dir=tmp_path / "state",
        dns=DnsSettings(listen_host="127.0.0.1", listen_port=0),
        proxy_port=0,
        notifier=lambda title, body: None,
    )

    async def scenario() -> Any:
        agent = Agent(settings)
        await agent.start()
        try:
            assert agent.device is not None
            device_id = agent.device.device_id

            def reported() -> bool:
                try:
                    status = _stored(server, device_id)
                except AssertionError:  # not enrolled yet
                    return False
                held = agent.sync.revision if agent.sync else None
                return bool(
                    status.device.agent_version == __version__
                    and held is not None
                    and status.device.applied_revision == held
                )

            await eventually(reported, within=15)
            return await asyncio.to_thread(_stored, server, device_id)
        finally:
            await agent.stop()

    status = run(scenario())
    assert status.device.hostname == socket.gethostname()
    assert status.device.applied_revision >= 1 and not status.stale
