"""Serialization of events: eventsourcing's Mapper with an orjson transcoder."""

from __future__ import annotations

from typing import Any, cast

import orjson
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    Mapper,
    Transcoder,
    Transcoding,
    TranscodingNotRegisteredError,
    UUIDAsHex,
)

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS


class OrjsonTranscoder(Transcoder):
    """JSON transcoder on orjson, wire-compatible with eventsourcing's JSONTranscoder.

    Types orjson does not know natively (and datetimes, so that they decode back to
    datetimes) are written as `{"_type_": name, "_data_": ...}` by registered transcodings.
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
        return orjson.dumps(obj, default=self._encode_obj, option=_OPTIONS)

    def decode(self, data: bytes) -> Any:
        return self._decode(orjson.loads(data))

    def _encode_obj(self, obj: Any) -> dict[str, Any]:
        transcoding = self.types.get(type(obj))
        if transcoding is None:
            raise TranscodingNotRegisteredError(
                f"Object of type {type(obj)} is not serializable. Please define and "
                "register a custom transcoding for this type."
            )
        return {"_type_": transcoding.name, "_data_": transcoding.encode(obj)}

    def _decode(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._decode(v) for v in value]
        if isinstance(value, dict):
            decoded = {k: self._decode(v) for k, v in value.items()}
            if len(decoded) == 2 and "_type_" in decoded and "_data_" in decoded:
                name = cast(str, decoded["_type_"])
                transcoding = self.names.get(name)
                if transcoding is None:
                    raise TranscodingNotRegisteredError(
                        f"Data serialized with name '{name}' is not deserializable. "
                        "Please register a custom transcoding for this type."
                    )
                return transcoding.decode(decoded["_data_"])
            return decoded
        return value


def create_mapper() -> Mapper[Any]:
    """The one mapper the event store uses."""
    return Mapper(transcoder=OrjsonTranscoder())
