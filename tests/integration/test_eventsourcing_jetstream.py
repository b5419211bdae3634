"""The JetStream persistence module under eventsourcing's own conformance suites.

The suites (unittest TestCases from `eventsourcing.tests.persistence`) run against the
session's real nats-server; each test has an application name, so a stream, of its own.
The figures the suites' performance tests print are shown in the terminal summary.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import Iterator
from functools import singledispatchmethod
from typing import Any

# Imported as a module: a TestCase class imported by name would be collected as a test.
import eventsourcing.tests.persistence as suites
import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    InfrastructureFactory,
    PersistenceError,
    StoredEvent,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.utils import Environment, get_topic

from infra.embedded import EmbeddedNats
from infra.eventsourcing_jetstream import (
    JetStreamAggregateRecorder,
    JetStreamApplicationRecorder,
    JetStreamFactory,
    JetStreamProcessRecorder,
    JetStreamTrackingRecorder,
)
from infra.eventsourcing_jetstream.client import JetStreamClient
from infra.eventsourcing_jetstream.names import LogNames

MODULE = "infra.eventsourcing_jetstream"
PERFORMANCE_TESTS = {"test_performance", "test_concurrent_throughput"}


class _PerformanceReport:
    """A pytest plugin that prints the suites' performance figures after the run."""

    def __init__(self) -> None:
        self.figures: list[tuple[str, str]] = []

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.figures:
            return
        terminalreporter.write_sep("-", "eventsourcing suites on JetStream: performance")
        for test_id, output in self.figures:
            lines = [line.strip() for line in output.splitlines() if line.strip()]
            # The suites print the TestCase itself first; the test id says which it is.
            figures = [line for line in lines if not line.startswith("test_")]
            terminalreporter.write_line(f"{test_id}: {' | '.join(figures)}")


@pytest.fixture(scope="module")
def report(request: pytest.FixtureRequest) -> _PerformanceReport:
    manager = request.config.pluginmanager
    plugin = manager.get_plugin("eventsourcing-jetstream-performance")
    if plugin is None:
        plugin = _PerformanceReport()
        manager.register(plugin, "eventsourcing-jetstream-performance")
    assert isinstance(plugin, _PerformanceReport)
    return plugin


@pytest.fixture(scope="module")
def admin(nats_server: EmbeddedNats) -> Iterator[JetStreamClient]:
    """A connection for deleting the tests' streams."""
    client = JetStreamClient([nats_server.url], name="eventsourcing tests admin")
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _jetstream(
    request: pytest.FixtureRequest, nats_server: EmbeddedNats, admin: JetStreamClient,
    report: _PerformanceReport, capsys: pytest.CaptureFixture[str],
) -> Iterator[None]:
    """Give each TestCase the server's URL; delete its streams; keep its figures."""
    case = request.instance
    if case is not None:
        case.nats_url = nats_server.url
        case.streams = []
    yield
    if case is not None:
        for stream in case.streams:
            with contextlib.suppress(PersistenceError):
                admin.run(admin.js.delete_stream(stream))
    name = request.node.name
    if name in PERFORMANCE_TESTS:
        report.figures.append((f"{request.node.parent.name}.{name}", capsys.readouterr().out))


def new_env(nats_url: str, name: str) -> Environment:
    return Environment(name, {"PERSISTENCE_MODULE": MODULE, "ORCH_NATS_URL": nats_url})


class JetStreamCase:
    """A fresh application name, so a fresh stream, per test."""

    nats_url: str
    streams: list[str]

    def setUp(self) -> None:
        self.app_name = f"Test {uuid.uuid4().hex[:12]}"  # the space is escaped
        self.streams.append(LogNames(self.app_name).stream)
        self._factory: JetStreamFactory | None = None
        super().setUp()  # type: ignore[misc]

    def tearDown(self) -> None:
        super().tearDown()  # type: ignore[misc]
        if self._factory is not None:
            self._factory.close()

    @property
    def js_factory(self) -> JetStreamFactory:
        if self._factory is None:
            factory = InfrastructureFactory.construct(new_env(self.nats_url, self.app_name))
            assert isinstance(factory, JetStreamFactory)
            self._factory = factory
        return self._factory


class TestAggregateRecorder(JetStreamCase, suites.AggregateRecorderTestCase):
    def create_recorder(self) -> JetStreamAggregateRecorder:
        recorder = self.js_factory.aggregate_recorder(purpose="snapshots")
        assert isinstance(recorder, JetStreamAggregateRecorder)
        return recorder

    def test_string_originator_ids(self) -> None:
        recorder = self.create_recorder()
        event = StoredEvent("agent 1.x*>", 1, "topic", b"state")
        recorder.insert_events([event])
        self.assertEqual(recorder.select_events("agent 1.x*>"), [event])


class TestApplicationRecorder(JetStreamCase, suites.ApplicationRecorderTestCase):
    def create_recorder(self) -> JetStreamApplicationRecorder:
        recorder = self.js_factory.application_recorder()
        assert isinstance(recorder, JetStreamApplicationRecorder)
        return recorder

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestNonInterleavingNotificationIDs(
    JetStreamCase, suites.NonInterleavingNotificationIDsBaseCase
):
    def create_recorder(self) -> JetStreamApplicationRecorder:
        recorder = self.js_factory.application_recorder()
        assert isinstance(recorder, JetStreamApplicationRecorder)
        return recorder


class TestTrackingRecorder(JetStreamCase, suites.TrackingRecorderTestCase):
    def create_recorder(self) -> TrackingRecorder:
        return self.js_factory.tracking_recorder()


class TestProcessRecorder(JetStreamCase, suites.ProcessRecorderTestCase):
    def create_recorder(self) -> JetStreamProcessRecorder:
        recorder = self.js_factory.process_recorder()
        assert isinstance(recorder, JetStreamProcessRecorder)
        return recorder


class MyTrackingRecorder(JetStreamTrackingRecorder):
    """A subclass, as a projection's view would be."""


class TestInfrastructureFactory(
    JetStreamCase, suites.InfrastructureFactoryTestCase[JetStreamFactory]
):
    def setUp(self) -> None:
        self.app_name = f"Test {uuid.uuid4().hex[:12]}"
        self.streams.append(LogNames(self.app_name).stream)
        self._factory = None
        self.env = new_env(self.nats_url, self.app_name)
        suites.InfrastructureFactoryTestCase.setUp(self)

    def expected_factory_class(self) -> type[JetStreamFactory]:
        return JetStreamFactory

    def expected_aggregate_recorder_class(self) -> type[JetStreamAggregateRecorder]:
        return JetStreamAggregateRecorder

    def expected_application_recorder_class(self) -> type[JetStreamApplicationRecorder]:
        return JetStreamApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[JetStreamTrackingRecorder]:
        return JetStreamTrackingRecorder

    def tracking_recorder_subclass(self) -> type[JetStreamTrackingRecorder]:
        return MyTrackingRecorder

    def expected_process_recorder_class(self) -> type[JetStreamProcessRecorder]:
        return JetStreamProcessRecorder


# --- a real eventsourcing Application on JetStream ---------------------------------------


class Dog(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name
        self.tricks: list[str] = []

    @event("TrickAdded")
    def add_trick(self, trick: str) -> None:
        self.tricks.append(trick)


class DogSchool(Application[uuid.UUID]):
    def register_dog(self, name: str) -> uuid.UUID:
        dog = Dog(name)
        self.save(dog)
        return dog.id

    def add_trick(self, dog_id: uuid.UUID, trick: str) -> None:
        dog: Dog = self.repository.get(dog_id)
        dog.add_trick(trick)
        self.save(dog)

    def get_tricks(self, dog_id: uuid.UUID) -> list[str]:
        dog: Dog = self.repository.get(dog_id)
        return list(dog.tricks)


class OtherSchool(DogSchool):
    pass


class TrickCounts(JetStreamTrackingRecorder):
    """A projection's view: counts in memory, its position tracked on JetStream."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.counts: Counter[str] = Counter()

    def count(self, trick: str, tracking: Tracking) -> None:
        self.insert_tracking(tracking)  # first: a notification seen twice is refused
        self.counts[trick] += 1


class CountTricks(Projection[TrickCounts]):
    topics = (get_topic(Dog.TrickAdded),)

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    @process_event.register
    def _(self, domain_event: Dog.TrickAdded, tracking: Tracking) -> None:
        self.view.count(domain_event.trick, tracking)


@pytest.fixture
def app_env(nats_server: EmbeddedNats, admin: JetStreamClient) -> Iterator[dict[str, str]]:
    """Environment of applications named for this test; their streams deleted after."""
    suffix = uuid.uuid4().hex[:8].upper()
    names = [f"DogSchool{suffix}", f"OtherSchool{suffix}", f"CountTricks{suffix}"]
    yield {
        "PERSISTENCE_MODULE": MODULE,
        "ORCH_NATS_URL": nats_server.url,
        "SUFFIX": suffix,
    }
    for name in names:
        with contextlib.suppress(PersistenceError):
            admin.run(admin.js.delete_stream(LogNames(name).stream))


def school(cls: type[DogSchool], env: dict[str, str]) -> DogSchool:
    """An application named uniquely for the test (the class name plus a suffix)."""
    named = type(f"{cls.__name__}{env['SUFFIX']}", (cls,), {})
    return named(env={**env, "IS_SNAPSHOTTING_ENABLED": "y"})


def test_an_application_saves_reloads_and_lists_notifications(app_env: dict[str, str]) -> None:
    app = school(DogSchool, app_env)
    dog_id = app.register_dog("Fido")
    app.add_trick(dog_id, "roll over")
    app.add_trick(dog_id, "play dead")
    app.take_snapshot(dog_id)
    app.add_trick(dog_id, "fetch")
    assert app.get_tricks(dog_id) == ["roll over", "play dead", "fetch"]
    app.close()

    again = school(DogSchool, app_env)
    assert again.name == app.name
    assert again.get_tricks(dog_id) == ["roll over", "play dead", "fetch"]
    assert again.snapshots is not None
    assert [s.originator_version for s in again.snapshots.get(dog_id)] == [3]
    notifications = again.notification_log.select(start=1, limit=10)
    assert [n.id for n in notifications] == [1, 2, 3, 4]
    assert [n.originator_version for n in notifications] == [1, 2, 3, 4]
    assert {n.originator_id for n in notifications} == {dog_id}
    again.close()


def test_two_applications_use_two_streams(app_env: dict[str, str]) -> None:
    dogs = school(DogSchool, app_env)
    others = school(OtherSchool, app_env)
    dog_id = dogs.register_dog("Fido")
    other_id = others.register_dog("Rex")

    assert isinstance(dogs.factory, JetStreamFactory)
    assert isinstance(others.factory, JetStreamFactory)
    assert dogs.factory.log.stream != others.factory.log.stream
    assert [n.originator_id for n in dogs.notification_log.select(1, 10)] == [dog_id]
    assert [n.originator_id for n in others.notification_log.select(1, 10)] == [other_id]
    assert dogs.recorder.max_notification_id() == others.recorder.max_notification_id() == 1
    dogs.close()
    others.close()


def test_a_projection_runner_follows_an_application(app_env: dict[str, str]) -> None:
    dogs = school(DogSchool, app_env)
    dog_id = dogs.register_dog("Fido")
    dogs.add_trick(dog_id, "roll over")
    application_class = type(dogs)
    dogs.close()
    projection = type(f"CountTricks{app_env['SUFFIX']}", (CountTricks,), {})

    with ProjectionRunner(
        application_class=application_class, projection_class=projection,
        view_class=TrickCounts, env={**app_env, "IS_SNAPSHOTTING_ENABLED": "y"},
    ) as runner:
        # Events from before the runner started, then one recorded while it runs.
        runner.wait(2, timeout=10)
        assert runner.view.counts == Counter({"roll over": 1})
        app: Any = runner.app
        app.add_trick(dog_id, "fetch")
        runner.wait(app.recorder.max_notification_id(), timeout=10)
        assert runner.view.counts == Counter({"roll over": 1, "fetch": 1})
        assert runner.view.max_tracking_id(app.name) == 3
    runner.view.client.close()
