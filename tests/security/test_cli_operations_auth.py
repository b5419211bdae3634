"""The operator's commands with auth on, as on the orchestrator's machine after `up`:
the audits read the log as the local operator (who has the auditor role), the reads send
the local read token (never printing it), and an identity without the role is told so
in one line."""

from __future__ import annotations

import asyncio

import orjson

from infra.auth.credentials import Keys, read_secret
from services.cli.main import EXIT_REFUSED, EXIT_UNREACHABLE
from tests.security.test_cli_auth import cli, up  # noqa: F401  (the `up` fixture)


async def test_operator_commands_use_the_local_credentials(up, tmp_path):  # noqa: F811
    api = {"ORCH_HTTP_PORT": str(up.http_port)}
    code, out, err = await cli(up, "events", "--json", "--limit", "1")
    assert (code, err) == (0, "")  # piped: no progress bar
    [first] = [orjson.loads(line) for line in out.splitlines()]
    assert (first["position"], first["aggregate"]) == (1, "identity")  # the local operator
    code, out, err = await cli(up, "explain", "agent", "nobody")
    assert (code, err) == (EXIT_REFUSED, "orchestrator: no agent nobody in the log\n")
    code, out, err = await cli(up, "state", "--at", "1", "--json")
    assert code == 0 and orjson.loads(out)["position"] == 1, err

    code, out, err = await cli(up, "agents", "--json", **api)
    assert code == 0 and orjson.loads(out)["agents"] == [], err
    code, out, err = await cli(up, "tasks", **api)
    assert code == 0 and out.splitlines()[0].split()[0] == "task", err
    token = read_secret(Keys.of(up.data_dir).read_token)

    code, out, err = await cli(up, "agents", ORCH_API_TOKEN="not-a-token", **api)
    assert (code, out) == (EXIT_REFUSED, "")
    assert err.startswith(f"orchestrator: the read API at http://127.0.0.1:{up.http_port} "
                          "refused the token of ORCH_API_TOKEN: ")
    assert len(err.splitlines()) == 1
    code, out, err = await cli(up, "agents", "--data-dir", str(tmp_path / "elsewhere"), **api)
    assert (code, err) == (EXIT_REFUSED, f"orchestrator: the read API at http://127.0.0.1:"
                           f"{up.http_port} wants a token: set ORCH_API_TOKEN (or --data-dir "
                           "to where auth/read.token is)\n")
    assert token not in out + err

    code, out, err = await cli(up, "cancel", "nope")
    assert (code, err) == (EXIT_REFUSED, "orchestrator: task nope was not cancelled: "
                           "not_found: task nope does not exist\n")


async def test_an_identity_without_the_role_is_told_in_one_line(up, tmp_path):  # noqa: F811
    seed_file = tmp_path / "bob.nk"
    code, _, err = await cli(up, "identity", "create", "bob", "--role", "submitter",
                             "--seed-file", str(seed_file))
    assert code == 0, err
    as_bob = {"ORCH_CREDENTIALS": str(seed_file)}

    # A read of the log is a direct get the server drops: answered by a timeout. A
    # command NATS refuses is said at once.
    (code, out, err), drained = await asyncio.gather(cli(up, "events", **as_bob),
                                                     cli(up, "drain", "w1", **as_bob))
    assert (code, out) == (EXIT_UNREACHABLE, "")
    assert err.splitlines() == ["orchestrator: cannot read the event log ORCH_EVENTS: no answer "
                                "in time; may 'bob' read it (the auditor role)?"]
    code, out, err = drained
    assert (code, out) == (EXIT_REFUSED, "")
    assert err.splitlines() == ["orchestrator: bob may not send admin.agent.drain: NATS "
                                "refused it (the identity's roles do not allow it)"]
    code, out, err = await cli(up, "cancel", "nope", **as_bob)  # a submitter may cancel
    assert code == EXIT_REFUSED and "not_found" in err
