"""nats-py's private internals that infra/bus/nats_internals.py relies on are still where
it expects them, with the same signatures: a nats-py release that moves one fails here,
naming it, instead of silently leaving a hook unused or a sequence untracked."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import nats.aio.client
import nats.protocol.parser
import pytest
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from packaging.requirements import Requirement

from infra.bus import direct, headers, nats_internals
from infra.bus.parser import FastParser

ROOT = Path(__file__).resolve().parents[2]
NATS_PY = version("nats-py")
Client = nats.aio.client.Client
# A JetStream data message's reply subject, v1 form: consumer sequence 3, stream 7.
REPLY = "$JS.ACK.S.c.1.7.3.1700000000000000000.0"


def broken(what: str) -> str:
    return (f"nats-py {NATS_PY}: {what}; infra/bus/nats_internals.py relies on it and must "
            "be brought up to date (or pyproject.toml's nats-py pin kept below this release)")


def params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def require_params(function: Any, name: str, expected: list[str]) -> None:
    found = params(function)
    assert found == expected, broken(f"{name} takes {found}, not {expected}")


def require_coroutine(function: Any, name: str) -> None:
    assert inspect.iscoroutinefunction(function), broken(f"{name} is no longer a coroutine")


def require_attribute(obj: Any, name: str, where: str) -> Any:
    assert hasattr(obj, name), broken(f"{where} has no attribute {name}")
    return getattr(obj, name)


def require_in_source(function: Any, name: str, snippet: str) -> None:
    assert snippet in inspect.getsource(function), broken(
        f"{name} no longer contains `{snippet}`")


def handle(*args: Any) -> None:
    pass


@pytest.fixture
def client() -> nats.aio.client.Client:
    return Client()


def test_the_installed_nats_py_is_in_the_pinned_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [pin] = [Requirement(d) for d in project["dependencies"] if Requirement(d).name == "nats-py"]
    assert any(spec.operator == "<" for spec in pin.specifier), (
        f"pyproject.toml's {pin} has no upper bound: nats_internals.py supports known "
        "releases only")
    assert pin.specifier.contains(NATS_PY), f"nats-py {NATS_PY} is outside {pin}"


class TestClient:
    def test_process_msg(self) -> None:
        process_msg = require_attribute(Client, "_process_msg", "Client")
        require_coroutine(process_msg, "Client._process_msg")
        require_params(process_msg, "Client._process_msg",
                       ["self", "sid", "subject", "reply", "data", "headers"])
        assert nats_internals.process_msg is process_msg

    def test_parse_header_lines(self) -> None:
        found = inspect.getattr_static(Client, "_parse_header_lines", None)
        assert isinstance(found, staticmethod), broken(
            "Client._parse_header_lines is no longer a static method")
        require_params(Client._parse_header_lines, "Client._parse_header_lines", ["raw"])
        require_in_source(Client._process_headers, "Client._process_headers",
                          "self._parse_header_lines(")

    def test_the_parser_and_the_subscriptions(self, client: nats.aio.client.Client) -> None:
        parser = require_attribute(client, "_ps", "Client()")
        assert isinstance(parser, nats.protocol.parser.Parser), broken(
            "Client()._ps is not a nats.protocol.parser.Parser")
        require_in_source(Client._read_loop, "Client._read_loop", "self._ps.parse(")
        subs = require_attribute(client, "_subs", "Client()")
        assert isinstance(subs, dict), broken("Client()._subs is not a dict")
        assert {"in_msgs", "in_bytes"} <= set(client.stats), broken(
            "Client().stats counts no in_msgs / in_bytes")

    def test_flush_pending(self) -> None:
        flush = require_attribute(Client, "_flush_pending", "Client")
        require_coroutine(flush, "Client._flush_pending")
        assert "force_flush" in params(flush), broken(
            "Client._flush_pending takes no force_flush")

    def test_the_ordered_consumer_reads_its_sequences_where_take_ordered_does(self) -> None:
        for snippet in (f"int(tokens[{nats_internals.ORDERED_STREAM_SEQ}])",
                        f"int(tokens[{nats_internals.ORDERED_CONSUMER_SEQ}])",
                        "jsi.reset_ordered_consumer(jsi._sseq + 1)",
                        "jsi._dseq = dseq + 1",
                        "jsi._active = True",
                        "sub._jsi.track_sequences(msg.reply)"):
            require_in_source(Client._process_msg, "Client._process_msg", snippet)


class TestParser:
    def test_what_the_fast_parser_extends(self) -> None:
        for name in ("AWAITING_CONTROL_LINE", "MAX_CONTROL_LINE_SIZE", "Parser"):
            require_attribute(nats.protocol.parser, name, "nats.protocol.parser")
        parse = nats.protocol.parser.Parser.parse
        require_coroutine(parse, "Parser.parse")
        require_params(parse, "Parser.parse", ["self", "data"])
        require_in_source(parse, "Parser.parse", "self.nc._process_msg(")
        parser = nats.protocol.parser.Parser(Client())
        for name in ("buf", "state", "nc"):
            require_attribute(parser, name, "Parser()")
        assert isinstance(parser.buf, bytearray), broken("Parser().buf is not a bytearray")
        assert parser.state == nats.protocol.parser.AWAITING_CONTROL_LINE, broken(
            "a new Parser does not await a control line")


class TestSubscriptions:
    def test_a_subscription(self, client: nats.aio.client.Client) -> None:
        sub = Subscription(client, 1, "s")
        for name in ("_pending_queue", "_received", "_jsi"):
            require_attribute(sub, name, "Subscription()")
        assert isinstance(sub._pending_queue, asyncio.Queue), broken(
            "Subscription()._pending_queue is not an asyncio.Queue")
        require_attribute(sub._pending_queue, "_unfinished_tasks", "asyncio.Queue()")
        assert nats_internals.queued(sub) == 0
        direct.attach(sub, handle, None)  # kept on the subscription: it takes attributes
        assert direct.handler_of(sub, REPLY.encode(), None) is handle
        sub._pending_queue.put_nowait(Msg(client))
        assert nats_internals.queued(sub) == 1
        assert direct.handler_of(sub, REPLY.encode(), None) is None  # the queue first
        assert nats_internals.subscription(client, 1) is None
        client._subs[1] = sub
        assert nats_internals.subscription(client, 1) is sub

    def test_a_push_subscription_holds_the_plain_one(self, client: nats.aio.client.Client) -> None:
        sub = Subscription(client, 1, "s")
        pushed = JetStreamContext.PushSubscription(client.jetstream(), sub, "S", "c")
        require_attribute(pushed, "_sub", "PushSubscription()")
        assert nats_internals.subscription_of(pushed) is sub

    def test_the_ordered_consumer_state(self, client: nats.aio.client.Client) -> None:
        jsi_class = require_attribute(JetStreamContext, "_JSI", "JetStreamContext")
        require_params(jsi_class.reset_ordered_consumer, "_JSI.reset_ordered_consumer",
                       ["self", "sseq"])
        require_coroutine(jsi_class.reset_ordered_consumer, "_JSI.reset_ordered_consumer")
        require_params(jsi_class.track_sequences, "_JSI.track_sequences", ["self", "reply"])
        require_params(jsi_class.__init__, "_JSI.__init__",
                       ["self", "js", "conn", "stream", "ordered", "psub", "sub", "ccreq"])

    def test_take_ordered_as_nats_py_takes_a_message(
            self, client: nats.aio.client.Client) -> None:
        sub = Subscription(client, 1, "s")
        pushed = JetStreamContext.PushSubscription(client.jetstream(), sub, "S", "c")
        jsi = JetStreamContext._JSI(client.jetstream(), client, "S", True, pushed, sub,
                                    ConsumerConfig())
        sub._jsi = jsi
        for name in ("_dseq", "_sseq", "_active", "_cmeta"):
            require_attribute(jsi, name, "_JSI()")
        jsi._dseq, jsi._active = 3, False
        assert nats_internals.take_ordered(sub, REPLY, REPLY.split(".")) is None
        assert (jsi._dseq, jsi._sseq, jsi._active, jsi._cmeta) == (4, 7, True, REPLY)
        assert sub._received == 1
        reset = nats_internals.take_ordered(sub, REPLY, REPLY.split("."))  # 3 again: a gap
        assert reset is not None and inspect.iscoroutine(reset)
        reset.close()  # resetting needs a connection: that it is asked for is enough here


class TestContextAndMessages:
    def test_a_client_keeps_its_servers_info(self, client: nats.aio.client.Client) -> None:
        require_attribute(client, "_server_info", "Client()")
        require_in_source(nats.aio.client.Client._process_connect_init,
                          "Client._process_connect_init", "self._server_info = srv_info")
        assert isinstance(client._server_info, dict), broken("Client._server_info is a dict")
        client._server_info = {"server_id": "NSERVER"}
        assert nats_internals.server_id(client) == "NSERVER"
        assert nats_internals.auth_required(client) is False
        client._server_info["auth_required"] = True
        assert nats_internals.auth_required(client) is True
        client._server_info = {}
        assert nats_internals.server_id(client) is None

    def test_a_jetstream_context_keeps_its_connection(
            self, client: nats.aio.client.Client) -> None:
        js = client.jetstream()
        require_attribute(js, "_nc", "JetStreamContext()")
        assert nats_internals.connection_of(js) is client

    def test_a_message_keeps_its_connection(self, client: nats.aio.client.Client) -> None:
        fields = [f.name for f in dataclasses.fields(Msg)]
        assert "_client" in fields, broken("Msg has no _client field")
        msg = Msg(client, subject="a", reply="r", data=b"x", headers={"k": "v"})
        copy = nats_internals.with_subject(msg, "b")
        assert (copy._client, copy.subject, copy.reply, copy.data, copy.headers) == (
            client, "b", "", b"x", {"k": "v"})


class TestHooks:
    def test_the_projects_client_is_hooked(self) -> None:
        assert headers.Client._process_msg is headers.Client.process_msg
        assert headers.Client._parse_header_lines is headers.parse_header_lines
        client = headers.Client()
        assert isinstance(client._ps, FastParser)
        assert client._ps._process_msg == client.process_msg

    def test_hooking_what_nats_py_lacks_fails_at_once(self, monkeypatch) -> None:
        monkeypatch.delattr(Client, "_process_msg")

        class Mine(Client):
            async def process_msg(self, *args: Any) -> None:
                pass

        with pytest.raises(AttributeError, match="_process_msg"):
            nats_internals.hook_client(Mine, process_msg=Mine.process_msg)
