"""The NATS auth callout, served by every orchestrator in one queue group.

The server sends a signed authorization request for each connection that is not the
orchestrator's own; the decision is `authorizer.decide`, and this module does the rest:
checking the server's signature, recording enrollments and refusals, and answering
with a user JWT scoped by `permissions` (or a refusal) signed by the issuer key.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from domain.errors import CommandRefused, ErrorCode
from domain.fields import ID_PATTERN
from domain.identities.identity import Identity
from infra.auth import jwt
from infra.auth.keys import Role
from infra.caller import current_identity
from infra.log.repository import Repository
from infra.names import AUTH_CALLOUT_SUBJECT, Names
from projections.access import Access, IdentityView
from services.auth.authorizer import Admit, Enroll, Refusal, Request, decide, read_request
from services.auth.permissions import RoleName, permissions
from services.auth.refusals import RefusalLog
from services.auth.reply_to import is_callout_inbox
from services.execute import execute
from services.metrics import Metrics

log = logging.getLogger(__name__)

QUEUE = "orchestrator-auth"
ACCOUNT = "ORCH"  # the account issued users are placed in (the server's configuration)
MAX_CONCURRENT = 64
_ID = re.compile(ID_PATTERN)


class AuthCallout:
    def __init__(self, nc: Client, names: Names, access: Access, identities: Repository,
                 refusals: RefusalLog, issuer_seed: str, jwt_ttl_s: float,
                 metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.time,
                 servers: Callable[[], set[str]] | None = None) -> None:
        self.nc = nc
        # The keys of the servers whose requests are answered; None: any server's (an
        # external cluster, whose members' keys this process does not know).
        self.servers = servers
        self.names = names
        self.access = access
        self.identities = identities
        self.refusals = refusals
        self.issuer_seed = issuer_seed
        self.jwt_ttl_s = jwt_ttl_s
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.answered = 0  # connections admitted (tests wait on it)
        # The latest answers' durations in seconds (the benchmark reads them).
        self.durations: deque[float] = deque(maxlen=10_000)
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)
        self._running: set[asyncio.Task[None]] = set()
        self._subscription: Any = None

    async def start(self) -> None:
        self._subscription = await self.nc.subscribe(AUTH_CALLOUT_SUBJECT, queue=QUEUE,
                                                     cb=self._on_request)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None
        for task in list(self._running):
            task.cancel()

    async def _on_request(self, msg: Msg) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._answer(msg))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        task.add_done_callback(lambda _: self._slots.release())

    async def _answer(self, msg: Msg) -> None:
        started = time.perf_counter()
        outcome = await self._decide_and_answer(msg)
        self.metrics.auth_connections.labels(outcome).inc()
        elapsed = time.perf_counter() - started
        self.metrics.auth_callout_latency.observe(elapsed)
        self.durations.append(elapsed)

    async def _decide_and_answer(self, msg: Msg) -> str:
        if not is_callout_inbox(msg.reply or ""):
            # Only nats-server asks, and it waits for answers in its own inbox: anything
            # else is not answered (it could steer our signed answer anywhere).
            log.warning("auth callout: request with reply %.80r not answered", msg.reply)
            return "unreadable"
        try:
            claims = jwt.decode(msg.data.decode(errors="replace"), Role.SERVER, self.clock())
            request = read_request(claims)
            if self.servers is not None and request.server_id not in self.servers():
                raise Refusal("signed by a server key that is not our server's")
        except (jwt.InvalidJwt, Refusal) as exc:
            # Not from a server, or not answerable: without its user key there is
            # nothing to sign, and the server refuses the connection when it times out.
            log.warning("auth callout: unreadable request refused: %s", exc)
            return "unreadable"
        try:
            admit = await self._admit(request)
        except Refusal as refusal:
            recorded = await self.refusals.record(
                refusal.reason, refusal.claimed or request.name, request.public_key,
                request.client)
            # Bounded like the log: the refusals left out are in the interval's summary.
            log.log(logging.WARNING if recorded else logging.DEBUG,
                    "connection refused reason=%r claimed=%r host=%s", refusal.reason,
                    refusal.claimed or request.name, request.client.get("host"))
            await msg.respond(self._response(request, error="not authorized").encode())
            return "refused"
        user = self._user_jwt(request, admit)
        await msg.respond(self._response(request, user_jwt=user).encode())
        self.answered += 1
        log.info("connection admitted identity=%s roles=%s host=%s", admit.identity,
                 ",".join(sorted(admit.roles)), request.client.get("host"))
        return "admitted"

    async def _admit(self, request: Request) -> Admit:
        decision = decide(request, self._known)
        if isinstance(decision, Admit):
            return decision
        if decision is None:
            found = await self._known_in_log(request)
            if found is not None:
                return found
            raise Refusal("unknown key (not enrolled, or revoked)", claimed=request.name)
        return await self._enroll(decision, request)

    def _known(self, public_key: str) -> IdentityView | None:
        return self.access.by_public_key(public_key)

    async def _known_in_log(self, request: Request) -> Admit | None:
        """A key our projection has not seen yet (enrolled moments ago, through another
        orchestrator): the identity the client names, read from the log itself."""
        if not _ID.fullmatch(request.name) or request.public_key is None:
            return None
        identity, _ = await self.identities.get(request.name, fresh=True)
        if identity is None or not identity.may_connect_with(request.public_key):
            return None
        return Admit(identity.id, frozenset(identity.roles))

    async def _enroll(self, enroll: Enroll, request: Request) -> Admit:
        def record(identity: Identity | None) -> Identity:
            if identity is None:
                raise CommandRefused(ErrorCode.UNAUTHORIZED,
                                     f"no enrollment for {enroll.agent_id}")
            identity.enroll(enroll.public_key, enroll.token_digest, self.clock(),
                            request.client)
            return identity

        current_identity.set(enroll.agent_id)
        try:
            outcome = await execute(self.identities, enroll.agent_id, record)
        except CommandRefused as refused:
            raise Refusal(refused.message, claimed=enroll.agent_id) from None
        log.info("agent enrolled agent=%s key=%s", enroll.agent_id, enroll.public_key)
        return Admit(enroll.agent_id, frozenset(outcome.aggregate.roles))

    def _user_jwt(self, request: Request, admit: Admit) -> str:
        roles = {RoleName(r) for r in admit.roles if r in RoleName.__members__.values()}
        grant = permissions(self.names, admit.identity, roles)
        now = self.clock()
        return jwt.encode({
            "sub": request.user_nkey, "aud": ACCOUNT, "name": admit.identity,
            "exp": int(now + self.jwt_ttl_s),
            "nats": {**grant.claims(), "subs": -1, "data": -1, "payload": -1,
                     "type": "user", "version": 2},
        }, self.issuer_seed, now)

    def _response(self, request: Request, user_jwt: str = "", error: str = "") -> str:
        body: dict[str, Any] = {"type": "authorization_response", "version": 2}
        if user_jwt:
            body["jwt"] = user_jwt
        else:
            body["error"] = error
        return jwt.encode({"sub": request.user_nkey, "aud": request.server_id, "nats": body},
                          self.issuer_seed, self.clock())
