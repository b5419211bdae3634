"""flush_subscriptions: once it returns, another connection's request finds a responder."""

from __future__ import annotations

import uuid

import nats
from nats.aio.msg import Msg
from nats.errors import NoRespondersError

from infra.bus.connection import flush_subscriptions
from infra.bus.embedded import EmbeddedNats

# Plain Client.flush() lost this race a few times per thousand rounds on this machine.
ROUNDS = 1_000


async def test_subscriptions_are_on_the_server_once_flushed(nats_server: EmbeddedNats) -> None:
    responder = await nats.connect(nats_server.url)
    requester = await nats.connect(nats_server.url)

    async def answer(msg: Msg) -> None:
        await msg.respond(b"ok")

    unanswered = 0
    try:
        for _ in range(ROUNDS):
            subject = "flush." + uuid.uuid4().hex
            subscriptions = [  # twelve, like the command service's endpoints
                await responder.subscribe(f"{subject}.{endpoint}", queue="q", cb=answer)
                for endpoint in range(12)
            ]
            await flush_subscriptions(responder)
            try:
                reply = await requester.request(f"{subject}.11", b"", timeout=5)
            except NoRespondersError:
                unanswered += 1
            else:
                assert reply.data == b"ok"
            for subscription in subscriptions:
                await subscription.unsubscribe()
    finally:
        await requester.close()
        await responder.close()
    assert unanswered == 0
