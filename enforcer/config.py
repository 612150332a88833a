"""Settings: the only place the environment is read.

Every setting can be given as an environment variable with the ``ENFORCER_`` prefix (for example
``ENFORCER_DATABASE_URL``) or in a settings file named by ``ENFORCER_SETTINGS_FILE`` (dotenv format,
``ENFORCER_...=value`` lines).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def default_database_url() -> str:
    """A SQLite file in the user's data directory (created on first use)."""
    data_dir = Path(platformdirs.user_data_dir("enforcer", appauthor=False))
    return f"sqlite:///{data_dir / 'enforcer.db'}"


class Settings(BaseSettings):
    """Enforcer's configuration. Field docstrings are the reference documentation."""

    model_config = SettingsConfigDict(
        env_prefix="ENFORCER_",
        env_file=os.environ.get("ENFORCER_SETTINGS_FILE"),
        extra="ignore",
    )

    database_url: str = Field(default_factory=default_database_url)
    """SQLAlchemy URL of the indicator store; SQLite by default, ``postgresql+psycopg://`` to scale."""

    policy_dir: Path = Path("policies")
    """Directory holding the organisation's policy files (``*.yaml``)."""

    policy_git_pull: bool = False
    """Run ``git pull --ff-only`` in the policy directory before each reload (daemon)."""

    reconcile_interval: float = 30.0
    """Seconds between two reconcile ticks of the daemon (a changed policy file triggers one at once)."""

    expire_interval: float = 60.0
    """Seconds between two runs of the daemon's expiry job."""

    event_retention_days: float = 30.0
    """Days raw network events are kept (rollups keep the history); older ones are deleted."""

    max_delete_share: float = Field(default=0.5, gt=0, le=1)
    """The daemon refuses, until an admin applies it by hand, a plan that deletes more than
    this share of the policy indicators (a policy file lost in a merge would unblock
    everything at once); 1 turns the brake off."""

    alert_retention_days: float = Field(default=90.0, gt=0)
    """Days an alert is kept after its last hit (acknowledged or not)."""

    audit_retention_days: float = Field(default=730.0, ge=0)
    """Days the audit log keeps a change (the daemon's expiry job prunes older ones and records
    that it did); 0 keeps every change for ever."""

    alert_webhook_url: str | None = None
    """URL the daemon POSTs new alerts to (JSON, signed with `alert_webhook_secret`), retried
    with back-off; an alert is sent once, when it opens."""

    alert_webhook_secret: SecretStr | None = None
    """Shared secret of the webhook: each POST carries ``X-Enforcer-Signature: sha256=<hex>``,
    the HMAC-SHA256 of ``<X-Enforcer-Timestamp>.<body>`` (required with `alert_webhook_url`)."""

    alert_syslog: str | None = None
    """``host:port`` of a SIEM's syslog receiver: new alerts are sent to it in CEF."""

    alert_syslog_protocol: Literal["udp", "tcp"] = "udp"
    """Transport of `alert_syslog` (TCP frames each message with a newline)."""

    alert_forward_attempts: int = Field(default=4, ge=1)
    """Tries per receiver and daemon run (0.5 s, 1 s, 2 s ... apart); alerts a receiver did not
    take are tried again on the next run."""

    max_event_skew: float = Field(default=86_400.0, gt=0)
    """Seconds an event's time may lie before or after the server's clock: events outside
    the window are refused with a reason (a year-9999 event would never be pruned)."""

    events_per_minute: int = Field(default=60_000, gt=0)
    """Events one device may upload per minute; beyond, its uploads get 429 and Retry-After."""

    discovery_interval: float = 30.0
    """Seconds between two runs of the daemon's continuous-report job (device events -> rollups)."""

    discovery_user_domains: bool = False
    """Keep the domain of user names apart in Cloud Discovery: ``alice@contoso.com`` and
    ``alice@fabrikam.com`` are then two users (by default ``alice``, ``alice@contoso.com`` and
    ``CONTOSO\\alice`` are one user, ``alice``)."""

    discovery_user_map: Path | None = None
    """A file of ``FORM = USER`` lines joining user names that differ (``a.smith = alice``):
    discovery counts FORM as USER (`enforcer.discovery.identity`)."""

    discovery_max_line: int = Field(default=65_536, ge=256)
    """Longest log line (bytes) an upload reads (API and ``enforcer discovery upload``); a
    longer line is skipped without being held in memory and counted as a bad line."""

    discovery_max_expansion: float = Field(default=100.0, ge=1)
    """A gzip log file is read up to this many times its own size (plus 1 MiB): real logs
    compress about 10 times, a decompression bomb 1,000 times. The rest is a bad line."""

    watch_policies: bool = True
    """Watch the policy directory and reconcile as soon as a file changes."""

    log_format: str = "auto"
    """``json``, ``console`` or ``auto`` (JSON when stderr is not a terminal)."""

    log_level: str = "info"
    """Minimum level of log events: debug, info, warning, error."""

    stale_after: float = Field(default=600.0, gt=0)
    """Seconds a device may lack the server's newest revision before it is listed as stale."""

    # --- server (enforcer serve) -----------------------------------------------------------

    admin_token: SecretStr | None = None
    """Bearer token of the admin API and console; the server refuses to start without one."""

    enroll_secret: SecretStr | None = None
    """Shared secret devices present once to enrol and receive their own device token."""

    group_secrets: dict[str, SecretStr] = {}
    """Enrolment secrets that put a device in device groups, as JSON: ``{"eng": "<secret>"}``.
    A device enrolling with one gets that group; the groups a device asks for are only
    recorded (the server decides: group secrets, the policy's hostname patterns, an admin)."""

    trust_device_groups: bool = False
    """Grant the groups devices ask for at enrolment (the old behaviour; any device can then
    pick the most lenient group). For labs and migrations only."""

    device_token_lifetime: float = Field(default=30 * 86_400.0, gt=0)
    """Seconds a device token is valid (30 days). Past half of it the server hands the device a
    replacement with its sync answers; a token used past its lifetime gets 401 and the device
    enrols again (with its enrolment secret)."""

    enroll_per_minute: int = Field(default=20, gt=0)
    """Enrolment attempts per client address per minute (behind a TLS proxy, set
    ``trusted_proxies`` so that the address is the device's, not the proxy's)."""

    trusted_proxies: Annotated[list[str], NoDecode] = []
    """Addresses or networks (comma-separated CIDRs) of the reverse proxies in front of
    `enforcer serve`: from them, the client address is taken from ``X-Forwarded-For`` (the
    nearest address that is not a trusted proxy); from anyone else the header is ignored."""

    header_timeout: float = Field(default=10.0, gt=0)
    """Seconds a client of `enforcer serve` has to send a whole request head: a connection
    that trickles (or never finishes) its head is closed, so thousands of them cannot hold
    the server's connections."""

    body_timeout: float = Field(default=60.0, gt=0)
    """Seconds a client of `enforcer serve` has to send a request's whole body once its head
    has arrived: a client that trickles or stalls its body gets 408 and is disconnected."""

    max_connections: int = Field(default=16_384, gt=0)
    """Connections and requests `enforcer serve` holds at once; beyond, new requests get 503."""

    shim_allow_clients: Annotated[list[str] | None, NoDecode] = None
    """Networks (comma-separated CIDRs) whose hosts a shim's DNS or proxy listener on an
    address other than loopback serves, besides loopback (``enforcer shim --allow-clients``);
    other clients are refused. Unset: the private networks (10/8, 172.16/12, 192.168/16,
    link-local, IPv6 unique-local). ``0.0.0.0/0,::/0`` makes an open resolver and proxy."""

    sync_cache_memory: int = Field(default=256 * 1024 * 1024, ge=0)
    """Bytes of rendered sync answers (gzip-compressed) `enforcer serve` keeps in memory to
    send to every device that asks the same question; the least recently used go first."""

    sync_spill_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    """A rendered sync answer larger than this (compressed) is kept in a file in
    ``sync_cache_dir`` instead of in memory."""

    sync_cache_disk: int = Field(default=4 * 1024 * 1024 * 1024, ge=0)
    """Bytes of spilled sync answers kept in ``sync_cache_dir``; the least recently used go
    first."""

    sync_cache_dir: Path | None = None
    """Directory of spilled sync answers (unlinked temporary files: nothing stays in it after
    the server stops); default ``sync`` in the user's cache directory (``~/.cache/enforcer``)."""

    server_host: str = "127.0.0.1"
    """Address `enforcer serve` listens on."""

    server_port: int = 8440
    """Port `enforcer serve` listens on."""

    # --- sinks (enforcer sinks; run by the daemon whenever the store's revision moves) ---------

    sinks: Annotated[list[str], NoDecode] = []
    """Sinks the daemon keeps at the store's revision, comma-separated: rpz, hosts, dnsmasq, defender."""

    sink_warn_action: Literal["block", "skip"] = "skip"
    """What DNS sinks do with Warn indicators: a resolver cannot offer the warning's "continue"."""

    sink_reload_timeout: float = 60.0
    """Seconds a file sink's reload command may run."""

    rpz_path: Path | None = None
    """Response policy zone file the ``rpz`` sink writes (Unbound ``rpz: zonefile:``)."""

    rpz_redirect_ip: str = ""
    """Block page address: blocked names answer with it (A or AAAA) instead of NXDOMAIN."""

    rpz_reload_command: str = ""
    """Run after the zone is written, e.g. ``unbound-control auth_zone_reload rpz.local.``."""

    hosts_path: Path | None = None
    """hosts-format file the ``hosts`` sink writes (``0.0.0.0 name``; exact names only)."""

    hosts_reload_command: str = ""
    """Run after the hosts file is written (dnsmasq re-reads ``addn-hosts`` on SIGHUP)."""

    dnsmasq_path: Path | None = None
    """dnsmasq configuration file the ``dnsmasq`` sink writes (``address=/name/0.0.0.0``)."""

    dnsmasq_reload_command: str = ""
    """Run after the dnsmasq file is written; dnsmasq reads it only at start (restart it)."""

    defender_tenant_url: str = "https://api.securitycenter.microsoft.com"
    """Base URL of the Defender for Endpoint API (or a regional one: eu.api.security.microsoft.com)."""

    defender_token_url: str = ""
    """OAuth2 token endpoint: ``https://login.microsoftonline.com/TENANT_ID/oauth2/v2.0/token``."""

    defender_client_id: str = ""
    """Application (client) id of the app registration with the Ti.ReadWrite.All permission."""

    defender_client_secret: SecretStr | None = None
    """Client secret of that app registration."""

    defender_scope: str = "https://api.securitycenter.microsoft.com/.default"
    """OAuth2 scope asked for with the client-credentials grant."""

    defender_max_indicators: int = 15_000
    """Active indicators per tenant (Defender's documented limit); a larger set is refused."""

    defender_batch_size: int = Field(default=500, ge=1, le=500)
    """Indicators per import or batch-delete call (at most 500, the documented limit)."""

    defender_calls_per_minute: int = Field(default=30, ge=1)
    """API calls per minute, reads included (the API allows 100; import and batch delete are
    documented at 30 per minute)."""

    defender_calls_per_hour: int = Field(default=1_500, ge=1)
    """API calls per hour (the documented limit); when the hour's calls are spent, an apply
    stops and the next run resumes where it stopped."""

    defender_collapse: bool = True
    """When the tenant has no room for every indicator, replace the names under one registrable
    domain by that domain where this changes no decision (same app, same action, nothing else
    under it)."""

    defender_state_dir: Path | None = None
    """Where the Defender sink keeps its recent API calls and the progress of an interrupted
    apply (default: the user's state directory, ``~/.local/state/enforcer``)."""

    defender_max_retries: int = Field(default=5, ge=0)
    """Retries of one call after 429 (waiting its Retry-After), 5xx or a network error."""

    defender_max_retry_after: float = 120.0
    """Longest wait in place (a Retry-After, the hourly call budget); a longer one ends the run
    as a temporary error, and a later run resumes."""

    sink_check_interval: float = Field(default=3600.0, ge=0)
    """Seconds between the daemon's checks of each sink's live content against the store
    (drift is repaired and exported as a metric); 0 turns the check off."""

    defender_timeout: float = 30.0
    """Seconds per HTTP request to the tenant."""

    @field_validator("sinks", "trusted_proxies", mode="before")
    @classmethod
    def _split_sinks(cls, value: object) -> object:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("alert_syslog")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            host, _, port = value.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{value!r} is not host:port (for example siem.example:514)")
        return value

    @model_validator(mode="after")
    def _signed_webhook(self) -> Settings:
        if self.alert_webhook_url and not self.alert_webhook_secret:
            raise ValueError(
                "ENFORCER_ALERT_WEBHOOK_URL needs ENFORCER_ALERT_WEBHOOK_SECRET: alerts are "
                "only sent signed"
            )
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an address or network (CIDR)") from None
        return value

    @field_validator("shim_allow_clients", mode="before")
    @classmethod
    def _split_clients(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("shim_allow_clients")
    @classmethod
    def _client_networks(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else cls._networks(value)


def get_settings() -> Settings:
    """Read the settings afresh (environment and settings file)."""
    return Settings()
