"""The heartbeat intake's quick reading of a beat agrees with the protocol's model on every
payload: the same values where both accept it, and a refusal where the model refuses."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from pydantic import ValidationError

from domain.agents.commands import Heartbeat
from services.health.heartbeats import read_beat

VALUES: list[Any] = [0, 1, 2, -1, 2**40, 2**64, 0.0, -0.0, 0.5, 1.0, 1.5, 1, True, False,
                     None, "1", [], ["t1"], ["bad id!"], {}, 1e300]


def payloads(draws: random.Random) -> list[bytes]:
    out = [b"", b"null", b"[]", b"{", b'{"incarnation":1,"seq":1,"load":NaN}',
           b'{"incarnation":1,"seq":1,"incarnation":2}', b'{"incarnation":1,"seq":1} ']
    fields = ["incarnation", "seq", "load", "running", "registered_at", "extra"]
    for _ in range(5000):
        body = {name: draws.choice(VALUES) for name in fields if draws.random() < 0.7}
        if draws.random() < 0.6:  # most like a real beat
            body.update(incarnation=draws.randrange(1, 5), seq=draws.randrange(0, 10**6))
            body.pop("extra", None)
            if draws.random() < 0.5:  # an older agent's, or a registration's position
                body.pop("registered_at", None)
            elif draws.random() < 0.5:
                body["registered_at"] = draws.randrange(1, 10**9)
        out.append(json.dumps(body).encode() if draws.random() < 0.9 else repr(body).encode())
    return out


def by_model(data: bytes) -> tuple[Any, ...] | None:
    try:
        beat = Heartbeat.model_validate_json(data)
    except ValidationError:
        return None
    return beat.incarnation, beat.seq, beat.load, list(beat.running), beat.registered_at


def read(data: bytes) -> tuple[Any, ...] | None:
    try:
        return read_beat(data)
    except ValidationError:
        return None


@pytest.mark.parametrize("seed", range(4))
def test_the_same_as_the_model(seed: int) -> None:
    accepted = 0
    for data in payloads(random.Random(seed)):
        got, want = read(data), by_model(data)
        assert got == want, data
        if want is not None:
            accepted += 1
            assert [type(v) for v in got or ()] == [type(v) for v in want], data
    assert accepted > 300  # the usual beats were among them


def test_a_usual_beat() -> None:
    assert read_beat(b'{"incarnation":2,"seq":7,"load":0.25}') == (2, 7, 0.25, [], None)
    assert read_beat(b'{"incarnation":2,"seq":7,"running":["t1"]}') == (2, 7, 0.0, ["t1"], None)
    assert read_beat(b'{"incarnation":2,"seq":7,"load":0.5,"registered_at":40}') == (
        2, 7, 0.5, [], 40)
