"""What ORCH_AUTH=on adds to an orchestrator: the identity projection, the auth callout,
the operators' identity commands, and the first start's local credentials."""

from __future__ import annotations

import logging
from typing import Any

from nats.aio.client import Client

from domain.errors import CommandRefused, ErrorCode
from domain.identities.commands import CreateApiToken, CreateIdentity
from infra import names as n
from infra.auth.credentials import Keys, read_secret, write_secret
from infra.auth.keys import public_key
from infra.bus.nats_internals import server_id
from infra.caller import ORCHESTRATOR, current_identity
from infra.log.port import EventLog
from infra.log.recorded import RecordedEvent
from infra.log.repository import Repository
from infra.names import Names
from infra.settings import Settings
from projections.access import Access
from services.auth.admin import AccessAdmin
from services.auth.callout import AuthCallout
from services.auth.gate import AccessGate
from services.auth.refusals import RefusalLog
from services.metrics import Metrics

log = logging.getLogger(__name__)

LOCAL_OPERATOR = "operator"
LOCAL_OPERATOR_ROLES = ["operator", "reader", "auditor"]


class AccessControl:
    def __init__(self, nc: Client, names: Names, store: EventLog, settings: Settings,
                 metrics: Metrics) -> None:
        self.names = names
        self.store = store
        self.settings = settings
        self.keys = Keys.of(settings.data_dir)
        self.access = Access()
        self.identities = Repository(store, n.IDENTITY)
        self.admin = AccessAdmin(self.identities)
        self.gate = AccessGate(self.access)
        self.callout: AuthCallout | None = None
        self.refusals = RefusalLog(Repository(store, n.ACCESS), metrics)
        if settings.auth_on:
            # The embedded server is the only one that may ask: only its key is
            # answered (it is learnt from the server's INFO on connecting).
            embedded = not settings.nats_url
            self.callout = AuthCallout(
                nc, names, self.access, self.identities, self.refusals,
                self.keys.issuer_seed(), settings.auth_jwt_ttl, metrics,
                servers=(lambda: {key for key in [server_id(nc)] if key}) if embedded else None)
        self._subscription: Any = None

    async def start(self) -> None:
        """Catch up with the identity events, follow them, and answer the callout."""
        wanted = self.names.kind_events(n.IDENTITY)
        async for event in self.store.iterate(0, wanted):
            self.access.apply(event)
        self._subscription = await self.store.tail(self.access.position.value, self._apply,
                                                   wanted)
        if self.callout is not None:
            await self.callout.start()
            await self._first_start()

    async def stop(self) -> None:
        if self.callout is not None:
            await self.callout.stop()
        await self.refusals.close()
        if self._subscription is not None:
            try:
                await self._subscription.unsubscribe()
            except Exception as exc:  # the connection may be gone already
                log.debug("identity follower not unsubscribed: %r", exc)
            self._subscription = None

    async def _apply(self, event: RecordedEvent) -> None:
        if event.position > self.access.position.value:
            self.access.apply(event)

    async def _first_start(self) -> None:
        """The local operator's identity (its seed in the data directory) and a read
        token for this machine, unless they exist already."""
        current_identity.set(ORCHESTRATOR)
        operator_key = public_key(read_secret(self.keys.operator))
        try:
            await self.admin.create(CreateIdentity(
                name=LOCAL_OPERATOR, roles=LOCAL_OPERATOR_ROLES,
                public_key=operator_key))
            log.info("local operator identity created; its seed: %s", self.keys.operator)
        except CommandRefused as refused:
            if refused.code != ErrorCode.CONFLICT:
                raise
            await self._check_operator_key(operator_key)
        if not self.keys.read_token.exists():
            reply = await self.admin.create_api_token(
                CreateApiToken(name=LOCAL_OPERATOR, scope="read"))
            write_secret(self.keys.read_token, reply["token"] + "\n")
            log.info("read API token written to %s", self.keys.read_token)

    async def _check_operator_key(self, operator_key: str) -> None:
        """The local operator identity exists: say so if it holds another key than this
        data directory's (another orchestrator of the deployment registered it), since
        the CLI here would be refused."""
        identity, _ = await self.identities.get(LOCAL_OPERATOR, fresh=True)
        if identity is not None and not identity.revoked and \
                identity.public_key not in (None, operator_key):
            log.warning("the %s identity holds another key than %s (another orchestrator "
                        "of this deployment registered it): the CLI here will be refused; "
                        "take the deployment's keys with `orchestrator auth export` there "
                        "and `orchestrator auth import --force` here", LOCAL_OPERATOR,
                        self.keys.operator)
