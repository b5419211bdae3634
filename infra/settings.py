"""Settings, read once at the edge from environment variables or `orchestrator up` flags."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

# Environment variable names (DESIGN §7), one constant each.
NATS_URL = "ORCH_NATS_URL"
DATA_DIR = "ORCH_DATA_DIR"
SUBJECT_PREFIX = "ORCH_SUBJECT_PREFIX"
HTTP_HOST = "ORCH_HTTP_HOST"
HTTP_PORT = "ORCH_HTTP_PORT"
HEARTBEAT_INTERVAL = "ORCH_HEARTBEAT_INTERVAL"
SUSPECT_AFTER = "ORCH_SUSPECT_AFTER"
DEAD_AFTER = "ORCH_DEAD_AFTER"
ACCEPT_TIMEOUT = "ORCH_ACCEPT_TIMEOUT"
UNRESPONSIVE_AFTER = "ORCH_UNRESPONSIVE_AFTER"
UNRESPONSIVE_HOLD = "ORCH_UNRESPONSIVE_HOLD"
EMBEDDED_NATS_PORT = "ORCH_EMBEDDED_NATS_PORT"
NATS_SYNC = "ORCH_NATS_SYNC"
HEARTBEAT_HISTORY = "ORCH_HEARTBEAT_HISTORY"
LOG_LEVEL = "ORCH_LOG_LEVEL"
PLACEMENT_STRATEGY = "ORCH_PLACEMENT_STRATEGY"
LEASE_TTL = "ORCH_LEASE_TTL"
RETRY_BACKOFF = "ORCH_RETRY_BACKOFF"
RETRY_BACKOFF_MAX = "ORCH_RETRY_BACKOFF_MAX"
FAILURES_BEFORE_CRITICAL = "ORCH_FAILURES_BEFORE_CRITICAL"
SUCCESS_BEFORE_PASSING = "ORCH_SUCCESS_BEFORE_PASSING"
DEREGISTER_DEAD_AFTER = "ORCH_DEREGISTER_DEAD_AFTER"
STREAM_REPLICAS = "ORCH_STREAM_REPLICAS"
SNAPSHOT_EVERY = "ORCH_SNAPSHOT_EVERY"
FINISHED_TASK_RETENTION = "ORCH_FINISHED_TASK_RETENTION"
FINISHED_TASK_LIMIT = "ORCH_FINISHED_TASK_LIMIT"
MAX_UNFINISHED_PER_SUBMITTER = "ORCH_MAX_UNFINISHED_PER_SUBMITTER"
MAX_UNFINISHED_TASKS = "ORCH_MAX_UNFINISHED_TASKS"
LOG_MAX_AGE = "ORCH_LOG_MAX_AGE"
AUTH = "ORCH_AUTH"
AUTH_JWT_TTL = "ORCH_AUTH_JWT_TTL"
TLS_CERT = "ORCH_TLS_CERT"
TLS_KEY = "ORCH_TLS_KEY"
NATS_TLS_CA = "ORCH_NATS_TLS_CA"
NATS_TLS_CERT = "ORCH_NATS_TLS_CERT"
NATS_TLS_KEY = "ORCH_NATS_TLS_KEY"


@dataclass(frozen=True)
class Settings:
    """Everything the composition root needs, with production defaults."""

    nats_url: str | None = None
    data_dir: Path = Path("./.orchestrator")
    subject_prefix: str = "orch"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    heartbeat_interval: float = 1.0
    suspect_after: float = 3.0
    dead_after: float = 5.0
    accept_timeout: float = 5.0
    # Gray failure (services/leader/unresponsive.py): an agent that leaves this many
    # assignments in a row unaccepted is out of placement for the hold, doubled for each
    # one more it leaves after (at most 16 times).
    unresponsive_after: int = 2
    unresponsive_hold: float = 30.0
    embedded_nats_port: int = 4222
    nats_sync: str = "always"
    heartbeat_history: int = 1
    log_level: str = "INFO"
    placement_strategy: str = "least_loaded"
    lease_ttl: float = 5.0
    retry_backoff: float = 1.0
    retry_backoff_max: float = 60.0
    failures_before_critical: int = 1
    success_before_passing: int = 1
    deregister_dead_after: float = 0.0
    stream_replicas: int = 1
    snapshot_every: int = 100_000
    finished_task_retention: float = 86_400.0
    finished_task_limit: int = 100_000
    # Admission control (domain/limits/limit.py): a submit past either bound is refused as
    # `overloaded`, so that memory stays bounded under any burst.
    max_unfinished_per_submitter: int = 100_000
    max_unfinished_tasks: int = 500_000
    log_max_age: float = 0.0
    auth: str = "on"
    auth_jwt_ttl: float = 300.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    nats_tls_ca: Path | None = None
    nats_tls_cert: Path | None = None
    nats_tls_key: Path | None = None

    @property
    def auth_on(self) -> bool:
        return self.auth == "on"

    def __post_init__(self) -> None:
        if not 0 < self.suspect_after <= self.dead_after:
            raise ValueError("suspect_after must be > 0 and <= dead_after")
        if self.heartbeat_interval <= 0 or self.heartbeat_interval >= self.suspect_after:
            raise ValueError("heartbeat_interval must be > 0 and < suspect_after")
        if self.nats_sync not in ("always", "default"):
            raise ValueError("nats_sync must be 'always' or 'default'")
        if self.heartbeat_history < 1:
            raise ValueError("heartbeat_history must be >= 1")
        if self.placement_strategy not in ("least_loaded", "round_robin", "bin_pack"):
            raise ValueError("placement_strategy must be least_loaded, round_robin or bin_pack")
        if self.lease_ttl <= 0 or self.accept_timeout <= 0:
            raise ValueError("lease_ttl and accept_timeout must be > 0")
        if self.unresponsive_after < 0 or self.unresponsive_hold <= 0:
            raise ValueError("unresponsive_after must be >= 0 (0 = never) and "
                             "unresponsive_hold > 0")
        if not 0 < self.retry_backoff <= self.retry_backoff_max:
            raise ValueError("retry_backoff must be > 0 and <= retry_backoff_max")
        if self.failures_before_critical < 1 or self.success_before_passing < 1:
            raise ValueError("failures_before_critical and success_before_passing must be >= 1")
        if self.stream_replicas not in (1, 3, 5):
            raise ValueError("stream_replicas must be 1, 3 or 5")
        if self.snapshot_every < 0:
            raise ValueError("snapshot_every must be >= 0 (0 = no snapshots)")
        if self.finished_task_retention < 0:
            raise ValueError("finished_task_retention must be >= 0 (0 = keep forever)")
        if self.finished_task_limit < 0:
            raise ValueError("finished_task_limit must be >= 0 (0 = no bound)")
        if self.max_unfinished_per_submitter < 0 or self.max_unfinished_tasks < 0:
            raise ValueError("max_unfinished_per_submitter and max_unfinished_tasks must be "
                             ">= 0 (0 = no bound)")
        if self.log_max_age < 0:
            raise ValueError("log_max_age must be >= 0 (0 = the log is kept forever)")
        if self.log_max_age and not self.snapshot_every:
            raise ValueError("log_max_age needs snapshots (snapshot_every > 0): they stand "
                             "for the events it cuts")
        if self.deregister_dead_after < 0:
            raise ValueError("deregister_dead_after must be >= 0 (0 = never)")
        if self.auth not in ("on", "off"):
            raise ValueError("auth must be 'on' or 'off'")
        if self.auth_jwt_ttl < 1:
            raise ValueError("auth_jwt_ttl must be >= 1 second")
        for cert, key, what in ((self.tls_cert, self.tls_key, "tls"),
                                (self.nats_tls_cert, self.nats_tls_key, "nats_tls")):
            if (cert is None) != (key is None):
                raise ValueError(f"{what}_cert and {what}_key go together")


# (field, environment variable, flag, help)
_OPTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("nats_url", NATS_URL, "--nats-url", "NATS server URL(s), comma separated; unset = embedded"),
    ("data_dir", DATA_DIR, "--data-dir", "embedded server's store and local state"),
    ("subject_prefix", SUBJECT_PREFIX, "--subject-prefix",
     "subject prefix (streams derive from it)"),
    ("http_host", HTTP_HOST, "--http-host", "read API bind address"),
    ("http_port", HTTP_PORT, "--http-port", "read API port (0 = any free port)"),
    ("heartbeat_interval", HEARTBEAT_INTERVAL, "--heartbeat-interval",
     "seconds between heartbeats, told to agents"),
    ("suspect_after", SUSPECT_AFTER, "--suspect-after", "seconds without heartbeat before suspect"),
    ("dead_after", DEAD_AFTER, "--dead-after", "seconds without heartbeat before dead"),
    ("accept_timeout", ACCEPT_TIMEOUT, "--accept-timeout",
     "seconds an agent has to accept an assignment"),
    ("unresponsive_after", UNRESPONSIVE_AFTER, "--unresponsive-after",
     "assignments in a row an agent leaves unaccepted before it is unresponsive: out of "
     "placement for --unresponsive-hold; 0 = never"),
    ("unresponsive_hold", UNRESPONSIVE_HOLD, "--unresponsive-hold",
     "seconds an unresponsive agent is out of placement before it is tried again; "
     "doubles with each further assignment it leaves unaccepted (at most 16 times)"),
    ("embedded_nats_port", EMBEDDED_NATS_PORT, "--embedded-nats-port",
     "client port of the embedded nats-server"),
    ("nats_sync", NATS_SYNC, "--nats-sync",
     "embedded server fsync: 'always' (durable, default) or 'default' (every 2 min)"),
    ("heartbeat_history", HEARTBEAT_HISTORY, "--heartbeat-history",
     "heartbeats kept per agent in the heartbeat stream (the orchestrator reads only the "
     "latest; with more, nats-server spends far more CPU per heartbeat in a large fleet)"),
    ("log_level", LOG_LEVEL, "--log-level", "DEBUG, INFO, WARNING or ERROR"),
    ("placement_strategy", PLACEMENT_STRATEGY, "--placement-strategy",
     "least_loaded, round_robin or bin_pack"),
    ("lease_ttl", LEASE_TTL, "--lease-ttl",
     "seconds a leader lease lasts without renewal (a successor waits at most this)"),
    ("retry_backoff", RETRY_BACKOFF, "--retry-backoff",
     "seconds before the first retry of a failed task; doubles each failure"),
    ("retry_backoff_max", RETRY_BACKOFF_MAX, "--retry-backoff-max", "longest retry delay"),
    ("failures_before_critical", FAILURES_BEFORE_CRITICAL, "--failures-before-critical",
     "heartbeats missed past suspect_after before an agent is suspect (flap damping)"),
    ("success_before_passing", SUCCESS_BEFORE_PASSING, "--success-before-passing",
     "heartbeats in a row before a suspect agent is healthy again (flap damping)"),
    ("deregister_dead_after", DEREGISTER_DEAD_AFTER, "--deregister-dead-after",
     "seconds after which a dead agent is deregistered and leaves the catalog; 0 = never"),
    ("stream_replicas", STREAM_REPLICAS, "--stream-replicas",
     "replicas of the streams and the lease bucket on a JetStream cluster: 1, 3 or 5"),
    ("snapshot_every", SNAPSHOT_EVERY, "--snapshot-every",
     "events between projection snapshots (start-up resumes from the latest); 0 = none"),
    ("finished_task_retention", FINISHED_TASK_RETENTION, "--finished-task-retention",
     "seconds (of log time) a finished task stays on the task board; 0 = forever"),
    ("finished_task_limit", FINISHED_TASK_LIMIT, "--finished-task-limit",
     "finished tasks the task board holds at most, the earliest finished leaving first; "
     "0 = no bound"),
    ("max_unfinished_per_submitter", MAX_UNFINISHED_PER_SUBMITTER,
     "--max-unfinished-per-submitter",
     "unfinished tasks a submitter may have; past it a submit is refused as overloaded "
     "(an operator may set one submitter's own: `orchestrator limits set`); 0 = no bound"),
    ("max_unfinished_tasks", MAX_UNFINISHED_TASKS, "--max-unfinished-tasks",
     "unfinished tasks in all; past it a submit is refused as overloaded; 0 = no bound"),
    ("log_max_age", LOG_MAX_AGE, "--log-max-age",
     "seconds an event stays in the log; older ones are cut, what is still needed carried "
     "forward and covered by a snapshot (export first: `orchestrator events --json`); "
     "0 = forever"),
    ("auth", AUTH, "--auth",
     "'on': every NATS client proves an identity (auth callout); 'off': development only"),
    ("auth_jwt_ttl", AUTH_JWT_TTL, "--auth-jwt-ttl",
     "seconds a connection's credentials last; a revoked identity is cut off within this"),
    ("tls_cert", TLS_CERT, "--tls-cert", "certificate file (PEM): the read API serves HTTPS"),
    ("tls_key", TLS_KEY, "--tls-key", "its private key file (PEM)"),
    ("nats_tls_ca", NATS_TLS_CA, "--nats-tls-ca", "CA file (PEM) to verify NATS with"),
    ("nats_tls_cert", NATS_TLS_CERT, "--nats-tls-cert",
     "client certificate file (PEM), for a NATS that asks for one"),
    ("nats_tls_key", NATS_TLS_KEY, "--nats-tls-key", "its private key file (PEM)"),
)


def _convert(name: str, raw: str) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "Path":
        return Path(raw)
    if kind == "Path | None":
        return Path(raw) if raw else None
    if kind == "str | None":
        return raw or None
    return raw


def _env_values(env: Mapping[str, str] | None) -> dict[str, Any]:
    env = os.environ if env is None else env
    return {name: _convert(name, env[var]) for name, var, _, _ in _OPTIONS if var in env}


def from_env(env: Mapping[str, str] | None = None, base: Settings | None = None) -> Settings:
    """Settings from environment variables, over `base` (defaults when None)."""
    return replace(base or Settings(), **_env_values(env))


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; unset flags fall back to the environment, then defaults."""
    defaults = Settings()
    for name, var, flag, text in _OPTIONS:
        parser.add_argument(
            flag, dest=name, default=None,
            help=f"{text} (env {var}; default {getattr(defaults, name)})",
        )


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    """Flags over environment over defaults, checked once as a whole."""
    given = {
        n: _convert(n, getattr(args, n)) for n, *_ in _OPTIONS if getattr(args, n) is not None
    }
    return Settings(**{**_env_values(env), **given})
