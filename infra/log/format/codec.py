"""Serialization of events: eventsourcing's Mapper with an orjson transcoder, writing
the compact forms the log stores an event's state in (infra/log/format/forms.py)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, cast

import orjson
from eventsourcing.domain import CanInitAggregate, DomainEventProtocol
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoder,
    Transcoding,
    TranscodingNotRegisteredError,
    UUIDAsHex,
    find_id_convertor,
)
from eventsourcing.utils import get_topic, resolve_topic

from infra.log.format import aggregates  # noqa: F401  (registers the log's topics)
from infra.log.format.forms import aggregate_topic, compact_state, expand_state, state_row

_NATIVE = (str, int, float, bool, type(None))
_CONTAINERS = (dict, list)  # all that orjson.loads makes besides scalars


class OrjsonTranscoder(Transcoder):
    """JSON transcoder on orjson, wire-compatible with eventsourcing's JSONTranscoder.

    Objects of registered types (UUID, datetime, Decimal and any registered later) are
    written as `{"_type_": name, "_data_": ...}`. They are replaced before orjson sees
    the value, because orjson would otherwise write some of them (UUIDs, dataclasses)
    itself and they would come back as strings and dicts.
    """

    def __init__(self) -> None:
        self.types: dict[type, Transcoding] = {}
        self.names: dict[str, Transcoding] = {}
        for transcoding in (UUIDAsHex(), DatetimeAsISO(), DecimalAsStr()):
            self.register(transcoding)

    def register(self, transcoding: Transcoding) -> None:
        self.types[transcoding.type] = transcoding
        self.names[transcoding.name] = transcoding

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(self._prepare(obj))

    def decode(self, data: bytes) -> Any:
        return self._decode(orjson.loads(data))

    def _prepare(self, obj: Any) -> Any:
        kind = type(obj)
        if kind in _NATIVE:
            return obj
        if kind is dict:
            return {k: self._prepare(v) for k, v in obj.items()}
        if kind is list or kind is tuple:
            return [self._prepare(v) for v in obj]
        transcoding = self.types.get(kind)
        if transcoding is not None:
            return {"_type_": transcoding.name, "_data_": self._prepare(transcoding.encode(obj))}
        # Subclasses of JSON types are written as their base, as JSONTranscoder does.
        if isinstance(obj, _NATIVE):
            return obj
        if isinstance(obj, dict):
            return {k: self._prepare(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self._prepare(v) for v in obj]
        raise TranscodingNotRegisteredError(
            f"Object of type {kind} is not serializable. Please define and register a "
            "custom transcoding for this type."
        )

    def _decode(self, value: Any) -> Any:
        """Replace `{"_type_", "_data_"}` objects in what orjson parsed, in place.

        In place and only into containers: every event is decoded on every replay, and a
        call and a new dict per value cost more than the parse itself.
        """
        kind = type(value)
        if kind is dict:
            for key, item in value.items():
                if type(item) in _CONTAINERS:
                    value[key] = self._decode(item)  # same keys: iterating stays valid
            if len(value) == 2 and "_type_" in value and "_data_" in value:
                name = cast(str, value["_type_"])
                transcoding = self.names.get(name)
                if transcoding is None:
                    raise TranscodingNotRegisteredError(
                        f"Data serialized with name '{name}' is not deserializable. "
                        "Please register a custom transcoding for this type."
                    )
                return transcoding.decode(value["_data_"])
            return value
        if kind is list:
            for index, item in enumerate(value):
                if type(item) in _CONTAINERS:
                    value[index] = self._decode(item)
        return value


# Datetimes and dataclasses go to `_default`, as registered types, not orjson's own form.
_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class EventStateTranscoder(OrjsonTranscoder):
    """The orchestrator's own events, written in one orjson pass.

    Its events hold strings, numbers, lists, dicts and datetimes (ids are strings; task
    payloads and results come from JSON), so orjson can write all but the datetimes (and
    other registered types) itself, in C; `_default` writes those as `_type_` objects,
    as OrjsonTranscoder does. Not for other applications: orjson would write a UUID as a
    plain string. The output is the same bytes (tests/unit/test_codec.py).
    """

    def encode(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, default=self._default, option=_PASSTHROUGH)
        except orjson.JSONEncodeError as exc:
            if isinstance(exc.__cause__, TranscodingNotRegisteredError):
                raise exc.__cause__ from None  # the error OrjsonTranscoder raises
            raise

    def _default(self, obj: Any) -> Any:
        transcoding = self.types.get(type(obj))
        if transcoding is None:
            raise TranscodingNotRegisteredError(
                f"Object of type {type(obj)} is not serializable. Please define and "
                "register a custom transcoding for this type.")
        return {"_type_": transcoding.name, "_data_": self._prepare(transcoding.encode(obj))}


class LogMapper(Mapper[Any]):
    """eventsourcing's Mapper (without a compressor or cipher: the log has neither),
    writing the log's compact forms and reading both them and the long ones."""

    def to_stored_event(self, domain_event: DomainEventProtocol[Any]) -> StoredEvent:
        topic = get_topic(domain_event.__class__)
        event_state = dict(vars(domain_event))
        originator_id = event_state.pop("originator_id")
        originator_version = event_state.pop("originator_version")
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            event_state["class_version"] = class_version
        compacted = compact_state(event_state, topic)
        row = state_row(compacted, topic, originator_id)
        state = self.transcoder.encode(compacted if row is None else row)
        return StoredEvent(originator_id=originator_id,
                           originator_version=originator_version, topic=topic, state=state)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[Any]:
        cls = resolve_topic(stored_event.topic)
        try:
            event_state = expand_state(self.transcoder.decode(stored_event.state),
                                       stored_event.topic, stored_event.originator_id)
        except Exception as exc:
            raise MapperDeserialisationError(
                f"Failed to deserialise state of stored event with topic "
                f"'{stored_event.topic}', originator_id '{stored_event.originator_id}' "
                f"and originator_version {stored_event.originator_version}: {exc}"
            ) from exc
        if "originator_topic" not in event_state and issubclass(cls, CanInitAggregate):
            event_state["originator_topic"] = aggregate_topic(stored_event.topic)
        id_convertor = find_id_convertor(cls, cast(Hashable, type(stored_event.originator_id)))
        event_state["originator_id"] = id_convertor(stored_event.originator_id)
        event_state["originator_version"] = stored_event.originator_version
        class_version = getattr(cls, "class_version", 1)
        from_version = event_state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(event_state)
            from_version += 1
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", event_state)
        return cast(DomainEventProtocol[Any], domain_event)


def create_mapper() -> Mapper[Any]:
    """The one mapper the event store uses; every aggregate's topics are registered by
    then (infra/log/format/aggregates.py), whatever else the process imported."""
    return LogMapper(transcoder=EventStateTranscoder())
