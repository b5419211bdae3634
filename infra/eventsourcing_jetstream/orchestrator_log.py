"""The orchestrator's own log as a read-only eventsourcing application, for auditors.

    from eventsourcing.projection import ProjectionRunner
    from infra.eventsourcing_jetstream import OrchestratorLog

    runner = ProjectionRunner(application_class=OrchestratorLog,
                              projection_class=MyProjection, view_class=MyView, env=env)

Its notifications are the log's positions (notification id == stream sequence); its
events are the classes the orchestrator recorded, each with a `provenance`; it refuses
every write. Settings, each also read prefixed with the application's name, as usual:
ORCH_NATS_URL (required), ORCH_SUBJECT_PREFIX (default orch), ORCH_CREDENTIALS (an nkey
seed file), ORCH_IDENTITY (default: that file's name), ORCH_AUTH_JWT_TTL (as the
orchestrator's, default 300) and ORCH_NATS_TLS_CA. See docs/auditor-projections.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nats.js.errors
from eventsourcing.application import Application
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    Mapper,
    OperationalError,
    ProcessRecorder,
    TrackingRecorder,
)
from eventsourcing.utils import Environment, EnvType

from infra import settings
from infra.auth.credentials import read_secret
from infra.bus.tls import client_context
from infra.eventsourcing_jetstream.client import JetStreamClient
from infra.eventsourcing_jetstream.log_errors import (
    LogNotFoundError,
    LogSettingsError,
    read_only,
)
from infra.eventsourcing_jetstream.log_recorder import OrchestratorLogRecorder
from infra.eventsourcing_jetstream.provenance import ProvenanceMapper
from infra.log.format.codec import OrjsonTranscoder
from infra.names import Names

# The same variables as the CLI's (services/cli/common/connection.py).
CREDENTIALS = "ORCH_CREDENTIALS"
IDENTITY = "ORCH_IDENTITY"
_NOT_IN_A_PREFIX = frozenset("*> \t\r\n")
# Credentials from the orchestrator's auth callout last ORCH_AUTH_JWT_TTL seconds; they
# are renewed (by reconnecting) after this share of it, as the SDK's agents do.
RENEW_AT = 0.7


class OrchestratorLogFactory(InfrastructureFactory[TrackingRecorder]):
    """The read-only recorder of one orchestrator's log, connected as the settings say."""

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        self.names = Names(self._prefix())
        identity, seed = self._credentials()
        renew_s = self._credentials_ttl() * RENEW_AT if seed else None
        options: dict[str, Any] = {"nkeys_seed_str": seed, "tls": self._tls()}
        if identity:
            # With auth on, an identity may receive replies in its own inbox only.
            options["inbox_prefix"] = self.names.inbox_prefix(identity)
        self.client = JetStreamClient(
            self._servers(), name=f"orchestrator log reader {identity or ''}".strip(),
            options=options,
        )
        try:
            self._check_log()
        except BaseException:
            self.client.close()
            raise
        if renew_s is not None:
            self.client.renew_every(renew_s)

    def _servers(self) -> list[str]:
        url = self.env.get(settings.NATS_URL)
        servers = [u.strip() for u in (url or "").split(",") if u.strip()]
        if not servers:
            raise LogSettingsError(
                "the orchestrator's NATS is not set: set "
                + " or ".join(self.env.create_keys(settings.NATS_URL))
            )
        return servers

    def _prefix(self) -> str:
        prefix = self.env.get(settings.SUBJECT_PREFIX) or "orch"
        if _NOT_IN_A_PREFIX & set(prefix) or prefix.startswith(".") or prefix.endswith("."):
            raise LogSettingsError(f"{settings.SUBJECT_PREFIX} {prefix!r} is not a prefix")
        return prefix

    def _credentials(self) -> tuple[str | None, str | None]:
        """(identity, nkey seed): none with an orchestrator whose auth is off."""
        path = self.env.get(CREDENTIALS)
        identity = self.env.get(IDENTITY) or (Path(path).stem if path else None)
        if not path:
            return identity, None
        try:
            return identity, read_secret(Path(path))
        except OSError as exc:
            raise LogSettingsError(f"{CREDENTIALS} {path!r} cannot be read: {exc}") from exc

    def _credentials_ttl(self) -> float:
        raw = self.env.get(settings.AUTH_JWT_TTL) or str(settings.Settings.auth_jwt_ttl)
        try:
            ttl = float(raw)
        except ValueError:
            ttl = 0.0
        if ttl < 1:
            raise LogSettingsError(f"{settings.AUTH_JWT_TTL} {raw!r}: give seconds, >= 1")
        return ttl

    def _tls(self) -> Any:
        ca = self.env.get(settings.NATS_TLS_CA)
        return client_context(Path(ca)) if ca else None

    def _check_log(self) -> None:
        stream = self.names.events_stream

        async def info() -> None:
            try:
                await self.client.js.stream_info(stream)
            except nats.js.errors.NotFoundError:
                raise LogNotFoundError(
                    f"no orchestrator log {stream}: has an orchestrator run with "
                    f"{settings.SUBJECT_PREFIX}={self.names.prefix} on this NATS?"
                ) from None

        try:
            self.client.run(info())
        except OperationalError as exc:
            raise OperationalError(
                f"cannot read the orchestrator log {stream}: no answer in time; may this "
                f"identity read it (the auditor role)? ({exc})"
            ) from exc

    def application_recorder(self) -> ApplicationRecorder:
        return OrchestratorLogRecorder(self.client, self.names)

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        raise read_only(f"a recorder of {purpose}")

    def tracking_recorder(
        self, tracking_recorder_class: type[TrackingRecorder] | None = None
    ) -> TrackingRecorder:
        raise read_only("tracking records (keep them with the view, in its own store)")

    def process_recorder(self) -> ProcessRecorder:
        raise read_only("a process recorder")

    def is_snapshotting_enabled(self) -> bool:
        return False  # snapshots would be writes

    def close(self) -> None:
        self.client.close()


class OrchestratorLog(Application[str]):
    """One orchestrator's log, read-only: an application to follow and project."""

    # Also the application name of the tracking records: a view following two
    # orchestrators' logs uses a subclass (another name) for the second.
    name = "OrchestratorLog"
    # Sections a NotificationLogReader may ask for: one page of direct gets, not the
    # library's default of 10, which would make a replay of a long log mostly round trips.
    log_section_size = 500

    def construct_factory(self, env: Environment) -> InfrastructureFactory[Any]:
        # Never PERSISTENCE_MODULE: that names the store of the user's view, whose env
        # the projection runner shares with this application.
        return OrchestratorLogFactory(env)

    def construct_mapper(self) -> Mapper[str]:
        # The orchestrator's own transcoder: the log's state decodes exactly as written.
        return ProvenanceMapper(transcoder=OrjsonTranscoder())

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        raise read_only("save")

    def take_snapshot(self, aggregate_id: str, version: int | None = None,
                      projector_func: Any = None) -> None:
        raise read_only("take_snapshot")

