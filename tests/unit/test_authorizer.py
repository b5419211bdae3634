"""The auth callout's decision as a pure function, and the JWT and nkey pieces it uses:
table tests, no server."""

from __future__ import annotations

from typing import Any

import pytest

from infra.auth import jwt
from infra.auth.keys import Role, b64url_encode, new_seed, public_key, sign, verify
from projections.access import IdentityView
from services.auth.authorizer import (
    Admit,
    Enroll,
    Refusal,
    decide,
    digest,
    parse_enrollment_token,
    read_request,
)

SERVER = new_seed(Role.ACCOUNT)  # any signer will do for the request's shape here
AGENT = new_seed(Role.USER)
NONCE = "a-nonce-of-the-server"


def request_claims(**opts: Any) -> dict[str, Any]:
    return {"iss": "NSERVER", "aud": "nats-authorization-request", "nats": {
        "server_id": {"id": "NSERVER", "name": "s"},
        "user_nkey": public_key(new_seed(Role.USER)),
        "client_info": {"host": "127.0.0.1", "id": 7, "nonce": NONCE},
        "connect_opts": {"name": "w1", **opts},
    }}


def proven(seed: str = AGENT, **opts: Any) -> dict[str, Any]:
    signature = b64url_encode(sign(seed, NONCE.encode()))
    return request_claims(nkey=public_key(seed), sig=signature, **opts)


class TestReadRequest:
    def test_a_key_that_signed_the_nonce_is_proven(self):
        assert read_request(proven()).public_key == public_key(AGENT)

    @pytest.mark.parametrize(("claims", "reason"), [
        ({"nats": "not an object"}, "malformed request"),
        # Signed by a server key other than the one it names, or meant for another use.
        ({**request_claims(), "iss": "NOTHERSERVER"},
         "not an authorization request of the server it names"),
        ({**request_claims(), "aud": "ORCH"},
         "not an authorization request of the server it names"),
        ({"nats": {}}, "malformed request"),
        (request_claims(nkey=public_key(AGENT)), "an nkey without a signed nonce"),
        (request_claims(nkey="UNOTAKEY", sig="AAAA"), "malformed nkey or signature"),
        (request_claims(nkey=public_key(new_seed(Role.ACCOUNT)), sig="AAAA"),
         "malformed nkey or signature"),
        (request_claims(nkey=public_key(AGENT),
                        sig=b64url_encode(sign(new_seed(Role.USER), NONCE.encode()))),
         "the nkey did not sign the nonce"),
    ])
    def test_refuses_what_proves_nothing(self, claims, reason):
        with pytest.raises(Refusal, match=reason):
            read_request(claims)

    def test_no_key_at_all_is_read_and_refused_by_the_decision(self):
        request = read_request(request_claims(auth_token="x"))
        assert request.public_key is None
        with pytest.raises(Refusal, match="no nkey"):
            decide(request, lambda key: None)


class TestEnrollmentTokens:
    @pytest.mark.parametrize("token", [
        "", "garbage", "oe1", "oe1.w1", "oe1.w1.", "oe1..secret", "oe2.w1.secret",
        "oe1.w*1.secret", "oe1.w>.secret", "oe1." + "x" * 65 + ".secret", "oe1.w 1.secret",
    ])
    def test_refuses_malformed_tokens_and_invalid_ids_before_any_lookup(self, token):
        with pytest.raises(Refusal):
            parse_enrollment_token(token)

    def test_reads_the_agent_id_and_keeps_only_a_digest(self):
        token = "oe1.w-1_a.s3cr3t"
        agent_id, token_digest = parse_enrollment_token(token)
        assert agent_id == "w-1_a" and token_digest == digest(token)
        assert "s3cr3t" not in token_digest


class TestDecide:
    def known(self, key: str) -> IdentityView | None:
        if key == public_key(AGENT):
            return IdentityView("w1", frozenset({"agent"}), key)
        return None

    def test_a_known_key_is_admitted_with_its_roles(self):
        assert decide(read_request(proven()), self.known) == Admit("w1", frozenset({"agent"}))

    def test_an_unknown_key_with_a_token_enrolls(self):
        newcomer = new_seed(Role.USER)
        decision = decide(read_request(proven(newcomer, auth_token="oe1.w2.s")), self.known)
        assert decision == Enroll("w2", public_key(newcomer), digest("oe1.w2.s"))

    def test_an_unknown_key_without_a_token_is_for_the_caller_to_look_further(self):
        assert decide(read_request(proven(new_seed(Role.USER))), self.known) is None


class TestJwt:
    def test_round_trip_and_the_claims_the_server_checks(self):
        issuer = new_seed(Role.ACCOUNT)
        token = jwt.encode({"sub": "UX", "aud": "ORCH", "exp": 2_000_000_000}, issuer,
                           now=1_000)
        claims = jwt.decode(token, Role.ACCOUNT, now=1_000)
        assert claims["iss"] == public_key(issuer) and claims["iat"] == 1_000
        assert claims["jti"] and claims["sub"] == "UX"

    @pytest.mark.parametrize("tamper", ["payload", "signature", "issuer-role", "expired"])
    def test_refuses_tampered_wrongly_signed_or_expired(self, tamper):
        issuer = new_seed(Role.ACCOUNT)
        token = jwt.encode({"sub": "UX", "exp": 2_000}, issuer, now=1_000)
        head, body, signature = token.split(".")
        role, now = Role.ACCOUNT, 1_500.0
        if tamper == "payload":
            token = f"{head}.{body[:-2]}AA.{signature}"
        elif tamper == "signature":
            token = f"{head}.{body}.{signature[:-4]}AAAA"
        elif tamper == "issuer-role":
            role = Role.SERVER
        else:
            now = 2_001.0
        with pytest.raises(jwt.InvalidJwt):
            jwt.decode(token, role, now=now)


def test_verify_is_false_for_garbage_not_an_exception():
    assert not verify("not-a-key", b"x", b"y")
    assert not verify(public_key(AGENT), b"x", b"short")
