"""NATS JWTs (v2): the claims the auth callout reads and writes, signed with nkeys.

A NATS JWT is `base64url(header).base64url(claims).base64url(signature)`, the header
`{"typ": "JWT", "alg": "ed25519-nkey"}`, the signature Ed25519 over the first two parts
by the issuer's key, and `jti` a hash of the claims written without it (nats-io/jwt
`ClaimsData.doEncode`). No maintained Python library writes them, and this is all the
callout needs.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import orjson

from infra.auth.keys import Role, b64url_decode, b64url_encode, public_key, sign, verify

HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
MAX_TOKEN_BYTES = 1 << 20  # as nats-io/jwt's MaxTokenSize
_HEADER_TEXT = b64url_encode(orjson.dumps(HEADER))


class InvalidJwt(ValueError):
    """Malformed, wrongly signed, or expired."""


def encode(claims: dict[str, Any], issuer_seed: str, now: float | None = None) -> str:
    """Sign `claims` (iss, iat and jti are filled in) with the issuer's seed."""
    body = {**claims, "iss": public_key(issuer_seed), "iat": int(now or time.time())}
    body.pop("jti", None)
    digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).digest()
    body["jti"] = base64.b32encode(digest).rstrip(b"=").decode()
    signing_input = f"{_HEADER_TEXT}.{b64url_encode(orjson.dumps(body))}"
    return f"{signing_input}.{b64url_encode(sign(issuer_seed, signing_input.encode()))}"


def decode(token: str, issuer_role: Role, now: float | None = None) -> dict[str, Any]:
    """The claims of a token signed by a key of `issuer_role`, checked and unexpired."""
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidJwt("token too large")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidJwt("expected 3 parts")
    try:
        header = orjson.loads(b64url_decode(parts[0]))
        claims = orjson.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except (ValueError, orjson.JSONDecodeError):
        raise InvalidJwt("not base64url JSON") from None
    if not isinstance(header, dict) or header.get("alg") != HEADER["alg"]:
        raise InvalidJwt("not an ed25519-nkey JWT")
    if not isinstance(claims, dict) or not isinstance(claims.get("iss"), str):
        raise InvalidJwt("no issuer")
    signing_input = f"{parts[0]}.{parts[1]}".encode()
    if not verify(claims["iss"], signing_input, signature, issuer_role):
        raise InvalidJwt("bad signature")
    expires = claims.get("exp")
    if isinstance(expires, int) and expires > 0 and (now or time.time()) > expires:
        raise InvalidJwt("expired")
    return claims
