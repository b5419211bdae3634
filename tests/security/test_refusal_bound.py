"""Anonymous clients against the log's growth, as an attacker would go at it: connects
with no credentials and a fresh random name each time, from one host and from many
(loopback addresses 127.0.0.2, ... as other hosts), with every field the client chooses
at its longest. The events the log takes and the bytes its stream grows by are counted
against the bound services/auth/refusals.py states."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable

import orjson

from infra.auth.keys import Role, b64url_encode, new_seed, public_key, sign
from services.auth import refusals as bound
from tests.security.conftest import Secure
from tests.support import eventually

LONG_NAME = 1_000  # within nats-server's 4 KiB control line


async def anonymous_connect(secure: Secure, host: str, name: str,
                            key_seed: str | None = None, token: str | None = None) -> bytes:
    """One connection speaking the protocol by hand from `host`: CONNECT with what the
    attacker chose (a key it made up proves only itself), then whatever the server says
    until it hangs up."""
    port = int(secure.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))
    try:
        info = orjson.loads((await reader.readline()).partition(b" ")[2])
        options = {"verbose": False, "pedantic": False, "name": name, "lang": "raw",
                   "version": "0", "protocol": 1}
        if key_seed is not None:
            options["nkey"] = public_key(key_seed)
            options["sig"] = b64url_encode(sign(key_seed, info["nonce"].encode()))
        if token is not None:
            options["auth_token"] = token
        writer.write(b"CONNECT " + orjson.dumps(options) + b"\r\nPING\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=20)
    finally:
        writer.close()


Attempt = tuple[str, str, str | None, str | None]


def attempts(hosts: Iterable[str], each: int) -> list[Attempt]:
    """(host, random name, key, token) of every attempt, the longest forms among them: a
    name of LONG_NAME characters, and a made-up key with an enrollment token for a
    64-character id (a reason quoting the id, the id claimed, the key recorded)."""
    made: list[Attempt] = []
    for n in range(each):
        for host in hosts:
            name = secrets.token_hex(LONG_NAME // 2)
            if n % 2 == 0:  # first, so that the recorded ones are the longest
                claimed = "x" + secrets.token_hex(40)[:63]
                made.append((host, name, new_seed(Role.USER), f"oe1.{claimed}.secret"))
            else:
                made.append((host, name, None, None))
    return made


async def refused_all(secure: Secure, tries: list[Attempt]) -> None:
    """Every attempt made, eight at a time, and every one refused."""
    slots = asyncio.Semaphore(8)

    async def one(host: str, name: str, seed: str | None, token: str | None) -> None:
        async with slots:
            answer = await anonymous_connect(secure, host, name, seed, token)
        assert b"Authorization Violation" in answer, answer

    await asyncio.gather(*(one(*attempt) for attempt in tries))


def refusals_counted(secure: Secure) -> float:
    counted = secure.orch.metrics.registry.get_sample_value(
        "orch_auth_connections_total", {"outcome": "refused"})
    return counted or 0.0


async def access_events(secure: Secure, after: int = 0) -> list[tuple[str, dict]]:
    found = await secure.orch.store.read(after, 100_000, secure.names.kind_events("access"))
    return [(e.name, e.data()) for e in found]


async def stream_bytes(secure: Secure) -> int:
    info = await secure.orch.js.stream_info(secure.names.events_stream)
    return int(info.state.bytes)


async def test_random_names_from_one_host_make_one_event(secure, caplog):
    tries = 40
    caplog.set_level(logging.WARNING, logger="services.auth")
    await refused_all(secure, attempts(["127.0.0.1"], tries))
    await eventually(lambda: refusals_counted(secure) >= tries, what="every attempt decided")
    # The process log is bounded as the event log is: one line, not one per attempt.
    lines = [r for r in caplog.records if r.getMessage().startswith("connection refused")]
    assert len(lines) == 1

    recorded = [d for name, d in await access_events(secure) if name == "ConnectionRefused"]
    assert len(recorded) == 1  # was one per attempt: each name was new
    assert recorded[0]["client"]["host"] == "127.0.0.1"
    registry = secure.orch.metrics.registry
    assert registry.get_sample_value("orch_auth_refusals_total",
                                     {"outcome": "recorded"}) == 1
    assert registry.get_sample_value("orch_auth_refusals_total",
                                     {"outcome": "summarised"}) == tries - 1


async def test_many_hosts_grow_the_log_by_a_bounded_number_of_bytes(secure, caplog):
    caplog.set_level(logging.WARNING, logger="services.auth")
    refusals = secure.orch.access_control.refusals
    # The interval is the log's clock's: a clock of the test's crosses it without waiting.
    now = [(int(refusals.clock() // bound.INTERVAL_S) + 1) * bound.INTERVAL_S]
    refusals.clock = lambda: now[0]
    hosts = [f"127.0.0.{i}" for i in range(2, 2 + 3 * bound.MAX_RECORDED_PER_INTERVAL)]
    each = 3
    start, bytes_before = await secure.orch.store.last_position(), await stream_bytes(secure)

    await refused_all(secure, attempts(hosts, each))
    await eventually(lambda: refusals_counted(secure) >= len(hosts) * each,
                     what="every attempt decided")
    grown = await stream_bytes(secure) - bytes_before
    events = await access_events(secure, start)
    assert len(events) == await secure.orch.store.last_position() - start  # nothing else
    recorded = [d for name, d in events if name == "ConnectionRefused"]
    assert len(recorded) == bound.MAX_RECORDED_PER_INTERVAL
    assert len({d["client"]["host"] for d in recorded}) == len(recorded)
    assert max(len(orjson.dumps(d)) for d in recorded) < bound.MAX_EVENT_BYTES
    # The interval's share, and an Opened for the hour's access log at most.
    assert grown <= (bound.MAX_RECORDED_PER_INTERVAL + 1) * bound.MAX_EVENT_BYTES

    # The next interval's first refusal brings the summary of what was left out.
    now[0] += bound.INTERVAL_S
    middle = await secure.orch.store.last_position()
    await refused_all(secure, attempts(["127.0.0.1"], 1))
    await eventually(lambda: refusals_counted(secure) >= len(hosts) * each + 1,
                     what="the last attempt decided")
    summaries = [d for name, d in await access_events(secure, middle)
                 if name == "RefusalsSummarised"]
    assert len(summaries) == 1
    summary = summaries[0]
    left_out = len(hosts) * each - bound.MAX_RECORDED_PER_INTERVAL
    assert sum(summary["hosts"].values()) + summary["other_refusals"] == left_out
    assert len(summary["hosts"]) == bound.SUMMARY_HOSTS
    assert summary["other_hosts"] == len(hosts) - bound.SUMMARY_HOSTS
    assert set(summary["hosts"]) <= set(hosts)
    said = [r.getMessage() for r in caplog.records if "not recorded one by one" in r.getMessage()]
    assert len(said) == 1 and f"{summary['other_refusals']} more from" in said[0], said
    grown = await stream_bytes(secure) - bytes_before
    assert grown <= (2 * bound.MAX_RECORDED_PER_INTERVAL + 1 + 1) * bound.MAX_EVENT_BYTES
    assert bound.MAX_LOG_BYTES_PER_DAY == (
        86_400 / bound.INTERVAL_S * (bound.MAX_RECORDED_PER_INTERVAL + 1) + 24
    ) * bound.MAX_EVENT_BYTES
