"""The orchestrator's own two NATS users, and what the server lets each do.

A requester chooses the reply subject of its request. If the connection that answers
could also write the log, the KV buckets or the object store, a request with
`reply="$KV.ORCH_LEADER.leader"` (or an event subject) would have the orchestrator write
its answer there. So the orchestrator splits its work over two users:

- the **log** user (`orchestrator.nk`) writes the event log, the liveness record, the
  leader lease and the snapshots, and reads the heartbeats. It may subscribe to its own
  inbox only, so no request ever reaches it: nobody can choose where it publishes.
- the **serving** user (a key derived from `orchestrator.nk`, so a deployment still
  shares two key files) answers commands and the auth callout. It may publish only to
  identities' inboxes (`_INBOX.<identity>.>`), the server's callout inbox, and what it
  sends by design: assignments, control messages, catalog changes and the log notice. It has no
  `allow_responses`: nats-server lets a client with it publish to the reply subject of
  any message delivered to it, the deny list notwithstanding (client.go,
  `pubAllowedFullCheck`), which is the very reflection this closes.
"""

from __future__ import annotations

import hashlib

import nkeys

from infra.auth.keys import Role
from infra.names import INBOX_ROOT, Names

# Inboxes of the orchestrator's own connections: outside `_INBOX.*`, the only inboxes
# the serving user may publish to, so no reply can be steered onto them.
LOG_INBOX = "_ORCH_LOG"
SERVING_INBOX = "_ORCH_SERVE"
# Where nats-server waits for auth callout answers (server/events.go, InboxPrefix).
CALLOUT_REPLIES = "$SYS._INBOX.>"
_SERVING_PURPOSE = b"orchestrator serving user v1"


def serving_seed(log_seed: str) -> str:
    """The serving user's seed, derived from the log user's: one secret to share and
    rotate, two keys the server tells apart."""
    _, raw = nkeys.decode_seed(bytearray(log_seed.strip().encode()))
    derived = hashlib.blake2b(raw, key=_SERVING_PURPOSE, digest_size=32).digest()
    return str(nkeys.encode_seed(derived, int(Role.USER)).decode())


def log_user_permissions(names: Names) -> dict[str, list[str]]:
    """Publish: the JetStream API and what it stores; subscribe: its own inbox."""
    return {
        "pub": ["$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$KV.>", "$O.>",
                names.events_wildcard, names.liveness_wildcard],
        "sub": [f"{LOG_INBOX}.>"],
    }


def serving_user_permissions(names: Names) -> dict[str, list[str]]:
    """Publish: replies to identities' inboxes and to the server's callout, and what it
    sends by design; subscribe: the commands, the callout, the micro service's own."""
    return {
        "pub": [f"{INBOX_ROOT}.*.>", CALLOUT_REPLIES, names.agent_tasks("*"),
                names.agent_control("*"), names.catalog_changes_wildcard, names.log_appended,
                names.task_outcomes_wildcard, names.task_feeds_wildcard],
        "sub": [f"{names.prefix}.>", "$SRV.>", "$SYS.REQ.USER.AUTH", f"{SERVING_INBOX}.>"],
    }


def _quoted(subjects: list[str]) -> str:
    return ", ".join(f'"{s}"' for s in subjects)


def user_block(public: str, permissions: dict[str, list[str]]) -> str:
    """One user of a nats-server `accounts` block, with its permissions."""
    return (f'{{ nkey: "{public}", permissions: {{ '
            f"publish: {{ allow: [{_quoted(permissions['pub'])}] }}, "
            f"subscribe: {{ allow: [{_quoted(permissions['sub'])}] }} }} }}")
