"""The infrastructure factory: recorders on the application's own stream."""

from __future__ import annotations

from typing import TypeVar

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    ProcessRecorder,
)
from eventsourcing.utils import Environment, EnvType, resolve_topic, strtobool
from nats.js.api import StorageType, StreamConfig

from infra.eventsourcing_jetstream.client import JetStreamClient
from infra.eventsourcing_jetstream.names import EVENTS, LogNames
from infra.eventsourcing_jetstream.recorders import (
    JetStreamAggregateRecorder,
    JetStreamApplicationRecorder,
    JetStreamProcessRecorder,
    JetStreamRecorder,
    JetStreamTrackingRecorder,
)

R = TypeVar("R", bound=JetStreamRecorder)


class JetStreamFactory(InfrastructureFactory[JetStreamTrackingRecorder]):
    """Recorders for one application, on a stream named after it."""

    # Settings, each also read prefixed with the application's name, as usual.
    NATS_URL = "ORCH_NATS_URL"  # required: the servers, comma separated
    REPLICAS = "ORCH_ES_REPLICAS"  # the stream's replicas, default 1
    CREATE_TABLE = "CREATE_TABLE"  # create the stream if absent, default yes

    aggregate_recorder_class = JetStreamAggregateRecorder
    application_recorder_class = JetStreamApplicationRecorder
    tracking_recorder_class = JetStreamTrackingRecorder
    process_recorder_class = JetStreamProcessRecorder

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        url = self.env.get(self.NATS_URL)
        if not url:
            raise OSError(
                "NATS server not found in environment with keys: "
                + ", ".join(self.env.create_keys(self.NATS_URL))
            )
        replicas = self.env.get(self.REPLICAS, "1")
        try:
            self.replicas = int(replicas)
        except ValueError:
            raise OSError(f"{self.REPLICAS} must be an integer: {replicas!r}") from None
        # Fixed now: the application's name picks its log, whatever the env says later.
        self.log = LogNames(self.env.name)
        self.client = JetStreamClient(
            [u.strip() for u in url.split(",") if u.strip()],
            name=f"eventsourcing {self.env.name}",
        )
        self._stream_ready = False

    def stream_config(self) -> StreamConfig:
        """The application's stream: file storage, kept forever, atomic batches."""
        return StreamConfig(
            name=self.log.stream,
            description=f"eventsourcing log of application {self.env.name!r}",
            subjects=self.log.stream_subjects,
            storage=StorageType.FILE,
            num_replicas=self.replicas,
            allow_atomic=True,
            allow_direct=True,
            deny_delete=True,
            deny_purge=True,
        )

    def _prepared(self) -> LogNames:
        if not self._stream_ready:
            create = strtobool(self.env.get(self.CREATE_TABLE, "yes") or "yes")
            self.client.run(self.client.ensure_stream(self.stream_config(), create=create))
            self._stream_ready = True
        return self.log

    def aggregate_recorder(self, purpose: str = EVENTS) -> AggregateRecorder:
        return self.aggregate_recorder_class(self.client, self._prepared(), purpose=purpose)

    def application_recorder(self) -> ApplicationRecorder:
        cls = self._recorder_class(
            self.APPLICATION_RECORDER_TOPIC, self.application_recorder_class
        )
        return cls(self.client, self._prepared())

    def tracking_recorder(
        self, tracking_recorder_class: type[JetStreamTrackingRecorder] | None = None
    ) -> JetStreamTrackingRecorder:
        cls = tracking_recorder_class or self._recorder_class(
            self.TRACKING_RECORDER_TOPIC, self.tracking_recorder_class
        )
        return cls(self.client, self._prepared())

    def process_recorder(self) -> ProcessRecorder:
        cls = self._recorder_class(self.PROCESS_RECORDER_TOPIC, self.process_recorder_class)
        return cls(self.client, self._prepared())

    def _recorder_class(self, key: str, default: type[R]) -> type[R]:
        topic = self.env.get(key)
        if not topic:
            return default
        cls = resolve_topic(topic)
        if not (isinstance(cls, type) and issubclass(cls, default)):
            raise TypeError(f"{key} {topic!r} is not a subclass of {default.__qualname__}")
        return cls

    def close(self) -> None:
        self.client.close()
