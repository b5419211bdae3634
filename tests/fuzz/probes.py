"""Probes of a valid shape that the world's state refuses (or accepts as a documented
no-op repeat): unknown agents, tasks and identities, forged and foreign tokens,
conflicting resubmissions, reserved and taken names (`semantic_probes`); and every probe
of one command (`probes_for`): those, and the payloads refused for their form or their
subject (tests/fuzz/payloads/)."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import strategies as st

from infra import names as n
from infra.names import AGENT_COMMANDS, CLIENT_COMMANDS
from services.auth.admin import RESERVED
from tests.fuzz.payloads import probe as p
from tests.fuzz.payloads.agents import services_valid
from tests.fuzz.payloads.bodies import hostile
from tests.fuzz.payloads.commands import SPECS
from tests.fuzz.payloads.senders import NAMES_ITS_AGENT, bad_sender, other_agent
from tests.fuzz.payloads.spec import obj
from tests.fuzz.payloads.tasks import text_4096
from tests.fuzz.payloads.text import CAPABILITY_CHARS, ID_CHARS, pattern_text
from tests.fuzz.payloads.values import small_json
from tests.fuzz.world import KIND, LIVE_SERVICES, PERSON, REVOKED, World


def unknown_id() -> st.SearchStrategy[str]:
    """A well-formed id that nothing in the world has (world ids start with 'fz-')."""
    return pattern_text(ID_CHARS, 62).map(lambda s: "zz" + s)


def _probe(body: Any, *expect: str, category: str, sender: str | None = None,
           bare: bool = False) -> p.Probe:
    return p.Probe(p.render(body).encode(), frozenset(expect), category, sender=sender,
                   bare=bare)


def _as(agent_id: str, body: dict[str, Any], named: bool, *expect: str,
        category: str) -> p.Probe:
    """An agent's command on the agent's own subject, its agent_id spelled out or not."""
    full = {"agent_id": agent_id, **body} if named else body
    return _probe(full, *expect, category=category, sender=agent_id)


def _sent_by(probes: st.SearchStrategy[p.Probe],
             senders: st.SearchStrategy[str]) -> st.SearchStrategy[p.Probe]:
    return st.builds(lambda probe, sender: dataclasses.replace(probe, sender=sender),
                     probes, senders)


def forged_token(world: World) -> st.SearchStrategy[str]:
    """Well-formed tokens no task issued: random, near misses of real ones."""
    real = sorted(world.tokens)
    near = st.builds(lambda t, how: how(t), st.sampled_from(real), st.sampled_from([
        str.upper, lambda t: t[:-1], lambda t: t + "0", lambda t: t[1:] + t[0],
        lambda t: t[:8], lambda t: t * 2, lambda t: "-" + t, lambda t: t.replace("a", "b")]))
    return (pattern_text(ID_CHARS, 64) | near).filter(lambda t: t not in world.tokens)


AGENTS = (World.live, World.left, World.worker, World.victim, World.doomed, World.phoenix)
# Names only the orchestrator may use for itself (services/auth/admin.py).
RESERVED_NAMES = st.sampled_from(sorted(RESERVED))


def semantic_probes(world: World, command: str) -> st.SearchStrategy[p.Probe] | None:
    """Well-formed commands the world's state refuses, or accepts without a write."""
    spec = SPECS[command]
    body = obj(spec)
    live, left = World.live, World.left
    t = world.tasks
    named = st.booleans()  # an agent's command: its agent_id spelled out, or left out
    if command == n.DEREGISTER:
        wrong_incarnation = st.integers(2, 2**63 - 1) | st.just(10**30)
        return st.one_of(
            st.builds(lambda a, i, nm: _as(a, {"incarnation": i}, nm, p.NOT_FOUND,
                                           category="unknown-agent"),
                      unknown_id(), st.integers(1, 2**63 - 1), named),
            st.builds(lambda a, i, nm: _as(a, {"incarnation": i}, nm, p.CONFLICT,
                                           category="wrong-incarnation"),
                      st.sampled_from([live, left, World.worker]), wrong_incarnation, named),
            # The incarnation that already left: accepted again, nothing written.
            named.map(lambda nm: _as(left, {"incarnation": 1}, nm, p.OK, category="repeat")),
        )
    if command == n.SERVICES:
        same = st.builds(
            lambda items, nm: _as(live, {"services": [p.Pairs(tuple(items))]}, nm, p.OK,
                                  category="repeat"),
            st.permutations(list(LIVE_SERVICES[0].items())), named)
        return st.one_of(
            st.builds(lambda a, s, nm: _as(a, {"services": s}, nm, p.NOT_FOUND,
                                           category="unknown-agent"),
                      unknown_id(), services_valid, named),
            st.builds(lambda s, nm: _as(left, {"services": s}, nm, p.CONFLICT,
                                        category="left-agent"), services_valid, named),
            same,
        )
    if command == n.ASSIGNMENTS:
        return st.builds(lambda a, nm: _as(a, {}, nm, p.OK, category="read"),
                         unknown_id() | st.sampled_from([live, left, World.worker]), named)
    if command == n.CATALOG_QUERY:
        return body.map(lambda b: _probe(b, p.OK, category="read"))
    if command == n.TASK_SUBMIT:
        done = t["fz-done"]
        other_kind = pattern_text(CAPABILITY_CHARS, 30).filter(lambda k: k != KIND)
        differs = st.builds(lambda b, k: {**b, "task_id": done.task_id, "kind": k},
                            body, other_kind)
        # The same body again, differently written (defaults spelled out or not, 3600 for
        # 3600.0, members in another order): answered with the status, not repeated.
        def rewritten(explicit: bool) -> st.SearchStrategy[p.Pairs]:
            defaults = {"priority": 0, "max_attempts": 3} if explicit else {}
            members = {**done.body, **defaults, "timeout_s": 3600 if explicit else 3600.0}
            payload = st.permutations(list(done.body["payload"].items())).map(
                lambda items: p.Pairs(tuple(items)))
            return st.builds(
                lambda pay, order: p.Pairs(tuple(
                    (k, pay if k == "payload" else v) for k, v in order)),
                payload, st.permutations(list(members.items())))

        rewrites = st.booleans().flatmap(rewritten)
        return st.one_of(
            differs.map(lambda b: _probe(b, p.CONFLICT, category="different-body")),
            rewrites.map(lambda b: _probe(b, p.OK, category="repeat")),
        )
    if command in (n.TASK_ACCEPT, n.TASK_PROGRESS, n.TASK_COMPLETE, n.TASK_FAIL):
        extra = body.map(lambda b: {k: v for k, v in b.items()
                                    if k not in ("task_id", "token")})
        known = st.sampled_from(sorted({i.task_id for i in t.values()}))
        # Another task's real token is as forged as a random one for this task.
        foreign = st.sampled_from(sorted(t)).flatmap(
            lambda name: st.tuples(
                st.sampled_from(sorted({i.task_id for i in t.values()}
                                       - {t[name].task_id})),
                st.just(t[name].token or "none")))
        probes = [
            st.builds(lambda i, k, e: _probe({"task_id": i, "token": k, **e}, p.NOT_FOUND,
                                             category="unknown-task"),
                      unknown_id(), pattern_text(ID_CHARS, 64), extra),
            st.builds(lambda i, k, e: _probe({"task_id": i, "token": k, **e}, p.STALE,
                                             category="forged-token"),
                      known, forged_token(world), extra),
            st.builds(lambda ik, e: _probe({"task_id": ik[0], "token": ik[1], **e}, p.STALE,
                                           category="foreign-token"),
                      foreign.filter(lambda ik: ik[1] != "none"), extra),
        ]
        # Sent by any agent: a token not the current one is stale whoever sends it.
        sent = _sent_by(st.one_of(probes), st.sampled_from([p.SELF, World.worker, live]))
        if command != n.TASK_COMPLETE:
            return sent
        done = t["fz-done"]
        holder = done.agent or World.worker
        # The report that completed it, again: accepted, nothing written, from the agent
        # it was assigned to; from any other, its current token proves nothing.
        return st.one_of(sent, st.builds(
            lambda r: _probe({"task_id": done.task_id, "token": done.token, "result": r},
                             p.OK, category="repeat", sender=holder), small_json),
            st.builds(
            lambda r, who: _probe({"task_id": done.task_id, "token": done.token, "result": r},
                                  p.UNAUTHORIZED, category="not-the-holder", sender=who),
            small_json, st.sampled_from(sorted({p.SELF, World.worker, live} - {holder}))))
    if command == n.TASK_CANCEL:
        reason = st.fixed_dictionaries({}, optional={"reason": text_4096})
        return st.one_of(
            st.builds(lambda i, r: _probe({"task_id": i, **r}, p.NOT_FOUND,
                                          category="unknown-task"), unknown_id(), reason),
            st.builds(lambda i, r: _probe({"task_id": i, **r}, p.CONFLICT,
                                          category="finished-task"),
                      st.sampled_from(["fz-done", "fz-dead"]), reason),
            reason.map(lambda r: _probe({"task_id": "fz-cancelled", **r}, p.OK,
                                        category="repeat")),
        )
    if command in (n.ADMIN_DRAIN, n.ADMIN_UNDRAIN):
        return st.one_of(
            unknown_id().map(lambda a: _probe({"agent_id": a}, p.NOT_FOUND,
                                              category="unknown-agent")),
            # One that left, two declared dead.
            st.sampled_from([left, World.victim, World.doomed]).map(
                lambda a: _probe({"agent_id": a}, p.CONFLICT, category="gone-agent")),
        )
    if command == n.ADMIN_DEREGISTER:
        return st.one_of(
            unknown_id().map(lambda a: _probe({"agent_id": a}, p.NOT_FOUND,
                                              category="unknown-agent")),
            # Its current incarnation has left already: accepted, nothing written.
            st.just(_probe({"agent_id": left}, p.OK, category="repeat")),
        )
    if command == n.ADMIN_ENROLL:
        not_rotating = st.builds(lambda b, rotate: {**{k: v for k, v in b.items()
                                                       if k != "rotate"}, **rotate},
                                 body, st.sampled_from([{}, {"rotate": False}]))
        return st.one_of(
            st.builds(lambda b, r: _probe({**b, "agent_id": r}, p.INVALID,
                                          category="reserved-name", bare=True),
                      body, RESERVED_NAMES),
            # It has a key: enrolling it again needs rotate.
            not_rotating.map(lambda b: _probe({**b, "agent_id": PERSON}, p.CONFLICT,
                                              category="enrolled")),
        )
    if command == n.ADMIN_IDENTITY_CREATE:
        return st.one_of(
            st.builds(lambda b, r: _probe({**b, "name": r}, p.INVALID,
                                          category="reserved-name", bare=True),
                      body, RESERVED_NAMES),
            st.builds(lambda b, r: _probe({**b, "name": r}, p.CONFLICT, category="exists"),
                      body, st.sampled_from([PERSON, REVOKED])),
        )
    if command == n.ADMIN_REVOKE:
        return st.one_of(
            st.builds(lambda b, r: _probe({**b, "name": r}, p.NOT_FOUND,
                                          category="unknown-identity"),
                      body, unknown_id() | RESERVED_NAMES),
            # Revoked already: accepted, nothing written.
            body.map(lambda b: _probe({**b, "name": REVOKED}, p.OK, category="repeat")),
        )
    if command == n.ADMIN_TOKEN_CREATE:
        return st.one_of(
            st.builds(lambda b, r: _probe({**b, "name": r}, p.INVALID,
                                          category="reserved-name", bare=True),
                      body, RESERVED_NAMES),
            body.map(lambda b: _probe({**b, "name": REVOKED}, p.CONFLICT,
                                      category="revoked")),
        )
    # register: every well-formed registration is carried out, but for one of an id a
    # live process holds (conflict), which depends on heartbeat timing: the integration
    # tests cover that.
    return None


def probes_for(world: World, command: str) -> st.SearchStrategy[p.Probe]:
    """Hostile payloads of `command`: most refused for their form, some for their subject
    (a sender token that is not an id; a body naming another agent than the subject), the
    rest for the world's state."""
    spec = SPECS[command]
    branches = {"form": hostile(spec)}
    weights = ["form"] * 6
    if command in AGENT_COMMANDS + CLIENT_COMMANDS:
        branches["sender"] = bad_sender(spec)
        weights.append("sender")
    if command in NAMES_ITS_AGENT:
        senders = st.sampled_from([p.SELF, *AGENTS]) | unknown_id()
        branches["other-agent"] = other_agent(spec, senders, st.sampled_from(AGENTS))
        weights.append("other-agent")
    semantic = semantic_probes(world, command)
    if semantic is not None:
        branches["state"] = semantic
        weights += ["state"] * 2
    return st.sampled_from(weights).flatmap(lambda which: branches[which])
