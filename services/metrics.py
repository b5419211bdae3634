"""Prometheus metrics of one orchestrator process, on their own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.commands = Counter(
            "orch_commands_total", "Commands answered, by command and outcome",
            ["command", "outcome"], registry=self.registry,
        )
        self.events_applied = Counter(
            "orch_events_applied_total", "Log events applied to the projections",
            registry=self.registry,
        )
        self.heartbeats = Counter(
            "orch_heartbeats_total", "Heartbeats received, by outcome",
            ["outcome"], registry=self.registry,
        )
        self.position = Gauge(
            "orch_projection_position", "Log position the projections have applied",
            registry=self.registry,
        )
        self.agents = Gauge(
            "orch_agents", "Agents by status", ["status"], registry=self.registry,
        )
        self.projection_resumes = Counter(
            "orch_projection_resumes_total",
            "Times the projections stopped following the log and were set to follow again",
            registry=self.registry,
        )
        self.snapshot_position = Gauge(
            "orch_snapshot_position",
            "Log position of the latest projection snapshot restored or written here",
            registry=self.registry,
        )
        self.decisions = Counter(
            "orch_health_decisions_total", "Health monitor decisions recorded",
            ["decision"], registry=self.registry,
        )
        self.blind_resets = Counter(
            "orch_health_deadline_resets_total",
            "Times every deadline restarted because this process could not see NATS",
            ["reason"], registry=self.registry,
        )
        self.heartbeat_lag = Histogram(
            "orch_heartbeat_lag_seconds",
            "From a heartbeat's arrival in its stream to its application here",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "orch_http_request_seconds", "Read API latency", ["route"],
            registry=self.registry,
        )
        self.auth_connections = Counter(
            "orch_auth_connections_total",
            "Connections the auth callout decided, by outcome (admitted, refused, unreadable)",
            ["outcome"], registry=self.registry,
        )
        self.auth_callout_latency = Histogram(
            "orch_auth_callout_seconds",
            "From an authorization request's arrival to its signed answer",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
