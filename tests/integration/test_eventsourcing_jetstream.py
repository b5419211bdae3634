"""The JetStream persistence module under eventsourcing's own conformance suites."""

# The suites (unittest TestCases from `eventsourcing.tests.persistence`) run against the
# session's real nats-server; each test has an application name, so a stream, of its own.
# The figures the suites' performance tests print are shown in the terminal summary.

from __future__ import annotations

import contextlib
import gc
import re
import threading
import uuid
import weakref
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import singledispatchmethod
from typing import Any, TypeVar

# Imported as a module: a TestCase class imported by name would be collected as a test.
import eventsourcing.tests.persistence as suites
import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    IntegrityError,
    InterfaceError,
    PersistenceError,
    ProcessRecorder,
    StoredEvent,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.utils import Environment, get_topic

from infra.bus.embedded import EmbeddedNats
from infra.eventsourcing_jetstream import (
    JetStreamAggregateRecorder,
    JetStreamApplicationRecorder,
    JetStreamFactory,
    JetStreamProcessRecorder,
    JetStreamTrackingRecorder,
)
from infra.eventsourcing_jetstream.client import JetStreamClient
from infra.eventsourcing_jetstream.names import LogNames

T = TypeVar("T")
MODULE = "infra.eventsourcing_jetstream"
PERFORMANCE_TESTS = {
    "test_performance", "test_concurrent_throughput", "test_concurrent_no_conflicts",
}
_TEST_CASE_REPR = re.compile(r"test_\w+ \([\w.]+\)")
REPORT = "eventsourcing-jetstream-performance"


class _PerformanceReport:
    """A pytest plugin showing the suites' performance figures in the terminal summary."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.lines:
            terminalreporter.write_sep("-", "eventsourcing suites on JetStream: performance")
            for line in self.lines:
                terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def report(request: pytest.FixtureRequest) -> _PerformanceReport:
    manager = request.config.pluginmanager
    plugin = manager.get_plugin(REPORT)
    if plugin is None:
        plugin = _PerformanceReport()
        manager.register(plugin, REPORT)
    assert isinstance(plugin, _PerformanceReport)
    return plugin


@pytest.fixture(scope="module")
def admin(nats_server: EmbeddedNats) -> Iterator[JetStreamClient]:
    """A connection for deleting the tests' streams."""
    client = JetStreamClient([nats_server.url], name="eventsourcing tests admin")
    yield client
    client.close()


@pytest.fixture(autouse=True)
def streams(
    request: pytest.FixtureRequest, nats_server: EmbeddedNats, admin: JetStreamClient,
    report: _PerformanceReport, capsys: pytest.CaptureFixture[str],
) -> Iterator[list[str]]:
    """Streams to delete after the test; a TestCase also gets the server's URL."""
    names: list[str] = []
    if request.instance is not None:
        request.instance.nats_url = nats_server.url
        request.instance.streams = names
    yield names
    for stream in names:
        with contextlib.suppress(PersistenceError):
            admin.run(admin.js.delete_stream(stream))
    if request.node.name in PERFORMANCE_TESTS:
        # The suites print the TestCase itself too; the test id says which it is.
        text = _TEST_CASE_REPR.sub("", capsys.readouterr().out)
        figures = " | ".join(line.strip() for line in text.splitlines() if line.strip())
        report.lines.append(f"{request.node.parent.name}.{request.node.name}: {figures}")


def unique_name(prefix: str, streams: list[str]) -> str:
    """An application name of this test's own; its stream is deleted after the test."""
    name = f"{prefix}{uuid.uuid4().hex[:8].upper()}"
    streams.append(LogNames(name).stream)
    return name


def new_env(nats_url: str, name: str) -> Environment:
    return Environment(name, {"PERSISTENCE_MODULE": MODULE, "ORCH_NATS_URL": nats_url})


class JetStreamCase:
    """A fresh application name, so a fresh stream, per test."""

    nats_url: str
    streams: list[str]

    def setUp(self) -> None:
        self.env = new_env(self.nats_url, unique_name("Test ", self.streams))  # space escaped
        self._factory: JetStreamFactory | None = None
        super().setUp()  # type: ignore[misc]

    def tearDown(self) -> None:
        super().tearDown()  # type: ignore[misc]
        if self._factory is not None:
            self._factory.close()

    @property
    def js_factory(self) -> JetStreamFactory:
        if self._factory is None:
            factory = InfrastructureFactory.construct(self.env)
            assert isinstance(factory, JetStreamFactory)
            self._factory = factory
        return self._factory


class TestAggregateRecorder(JetStreamCase, suites.AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        return self.js_factory.aggregate_recorder(purpose="snapshots")


class TestApplicationRecorder(JetStreamCase, suites.ApplicationRecorderTestCase):
    def create_recorder(self) -> ApplicationRecorder:
        return self.js_factory.application_recorder()

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestNonInterleavingNotificationIDs(
    JetStreamCase, suites.NonInterleavingNotificationIDsBaseCase
):
    def create_recorder(self) -> ApplicationRecorder:
        return self.js_factory.application_recorder()


class TestTrackingRecorder(JetStreamCase, suites.TrackingRecorderTestCase):
    def create_recorder(self) -> TrackingRecorder:
        return self.js_factory.tracking_recorder()


class TestProcessRecorder(JetStreamCase, suites.ProcessRecorderTestCase):
    def create_recorder(self) -> ProcessRecorder:
        return self.js_factory.process_recorder()


class MyTrackingRecorder(JetStreamTrackingRecorder):
    """A subclass, as a projection's view would be."""


class TestInfrastructureFactory(
    JetStreamCase, suites.InfrastructureFactoryTestCase[JetStreamFactory]
):
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


# --- guarantees beyond the suites -------------------------------------------------------


@pytest.fixture
def factory(nats_server: EmbeddedNats, streams: list[str]) -> Iterator[JetStreamFactory]:
    env = new_env(nats_server.url, unique_name("Guarantees", streams))
    factory = InfrastructureFactory.construct(env)
    assert isinstance(factory, JetStreamFactory)
    yield factory
    factory.close()


def test_of_writers_racing_for_one_version_exactly_one_wins(factory: JetStreamFactory) -> None:
    recorder = factory.application_recorder()
    originator_id = "agent 1.x*>"  # a string id, with characters subjects cannot hold
    start = threading.Barrier(10)

    def write(writer: int) -> bool:
        start.wait()
        try:
            recorder.insert_events([StoredEvent(originator_id, 1, "t", str(writer).encode())])
        except IntegrityError:
            return False
        return True

    with ThreadPoolExecutor(10) as pool:
        won = list(pool.map(write, range(10)))

    assert won.count(True) == 1
    [stored] = recorder.select_events(originator_id)
    assert stored.originator_id == originator_id


def test_a_stale_tracking_position_is_corrected_by_the_server(factory: JetStreamFactory) -> None:
    first = factory.process_recorder()
    second = factory.process_recorder()
    first.insert_events([], tracking=Tracking("upstream", 1))
    second.insert_events([], tracking=Tracking("upstream", 2))

    # `first` still believes 1 is the last: the server refuses, it reads again, retries.
    event = StoredEvent(uuid.uuid4(), 1, "t", b"s")
    first.insert_events([event], tracking=Tracking("upstream", 3))
    assert first.max_tracking_id("upstream") == 3
    assert len(first.select_events(event.originator_id)) == 1

    # `second` believes 2: reading again shows 3 is recorded, so 3 is refused.
    with pytest.raises(IntegrityError):
        second.insert_events([], tracking=Tracking("upstream", 3))

    factory.close()
    with pytest.raises(InterfaceError):
        first.max_tracking_id("upstream")


def test_a_client_nobody_refers_to_closes_its_connection(nats_server: EmbeddedNats) -> None:
    client = JetStreamClient([nats_server.url], name="eventsourcing unreferenced")
    thread = client._thread
    reference = weakref.ref(client)
    del client
    gc.collect()
    assert reference() is None
    thread.join(5.0)
    assert not thread.is_alive()


# --- a real eventsourcing Application on JetStream ---------------------------------------


class Dog(Aggregate):
    class Registered(Aggregate.Created):
        name: str

    class TrickAdded(Aggregate.Event):
        trick: str

    @event(Registered)
    def __init__(self, name: str) -> None:
        self.name = name
        self.tricks: list[str] = []

    @event(TrickAdded)
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
        return list(self.repository.get(dog_id).tricks)


class TrickCounts(JetStreamTrackingRecorder):
    """A projection's view: counts in memory, its position tracked on JetStream."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.counts: Counter[str] = Counter()

    def count(self, trick: str, tracking: Tracking) -> None:
        # Counted before the position is recorded, so that a reader who sees the position
        # (runner.wait) sees the count; undone if the notification was seen before.
        self.counts[trick] += 1
        try:
            self.insert_tracking(tracking)
        except Exception:
            self.counts[trick] -= 1
            raise


class CountTricks(Projection[TrickCounts]):
    topics = (get_topic(Dog.TrickAdded),)

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)

    @process_event.register
    def _(self, domain_event: Dog.TrickAdded, tracking: Tracking) -> None:
        self.view.count(domain_event.trick, tracking)


@pytest.fixture
def env(nats_server: EmbeddedNats) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": MODULE, "ORCH_NATS_URL": nats_server.url,
        "IS_SNAPSHOTTING_ENABLED": "y",
    }


def named(cls: type[T], streams: list[str]) -> type[T]:
    """A subclass named for this test: an application's (or projection's) name is its log."""
    return type(unique_name(cls.__name__, streams), (cls,), {})


def test_an_application_saves_reloads_and_lists_notifications(
    env: dict[str, str], streams: list[str]
) -> None:
    school = named(DogSchool, streams)
    with school(env) as app:
        dog_id = app.register_dog("Fido")
        app.add_trick(dog_id, "roll over")
        app.add_trick(dog_id, "play dead")
        app.take_snapshot(dog_id)
        app.add_trick(dog_id, "fetch")

    with school(env) as again:
        assert again.get_tricks(dog_id) == ["roll over", "play dead", "fetch"]
        assert again.snapshots is not None
        assert [s.originator_version for s in again.snapshots.get(dog_id)] == [3]
        notifications = again.notification_log.select(start=1, limit=10)
        # The snapshot is in the application's stream too, at sequence 4: notification
        # ids ascend with gaps, which the library allows (as on PostgreSQL).
        assert [n.id for n in notifications] == [1, 2, 3, 5]
        assert [n.originator_version for n in notifications] == [1, 2, 3, 4]
        assert {n.originator_id for n in notifications} == {dog_id}


def test_two_applications_use_two_streams(env: dict[str, str], streams: list[str]) -> None:
    with named(DogSchool, streams)(env) as dogs, named(DogSchool, streams)(env) as others:
        dog_id, other_id = dogs.register_dog("Fido"), others.register_dog("Rex")
        assert isinstance(dogs.factory, JetStreamFactory)
        assert isinstance(others.factory, JetStreamFactory)
        assert dogs.factory.log.stream != others.factory.log.stream
        assert [n.originator_id for n in dogs.notification_log.select(1, 10)] == [dog_id]
        assert [n.originator_id for n in others.notification_log.select(1, 10)] == [other_id]


def test_a_projection_runner_follows_an_application(
    env: dict[str, str], streams: list[str]
) -> None:
    with named(DogSchool, streams)(env) as dogs:
        dog_id = dogs.register_dog("Fido")
        dogs.add_trick(dog_id, "roll over")
    runner = ProjectionRunner(
        application_class=type(dogs), projection_class=named(CountTricks, streams),
        view_class=TrickCounts, env=env,
    )
    try:
        with runner:
            # Events from before the runner started, then one recorded while it runs.
            runner.wait(2, timeout=10)
            assert runner.view.counts == Counter({"roll over": 1})
            app: Any = runner.app
            app.add_trick(dog_id, "fetch")
            runner.wait(app.recorder.max_notification_id(), timeout=10)
            assert runner.view.counts == Counter({"roll over": 1, "fetch": 1})
            assert runner.view.max_tracking_id(app.name) == 3
    finally:
        # The runner closes its application, but not its view's factory.
        runner.view.client.close()
