"""NATS nkeys: make seeds, read public keys, sign and verify (Ed25519).

The `nkeys` package signs with a seed; making a seed and checking a signature against a
public key alone are the two things it lacks, and both are small.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from enum import IntEnum

import nacl.exceptions
import nacl.signing
import nkeys


class Role(IntEnum):
    """The prefix byte of an nkey: which kind of NATS entity it names."""

    ACCOUNT = nkeys.PREFIX_BYTE_ACCOUNT  # "A..."
    USER = nkeys.PREFIX_BYTE_USER  # "U..."
    SERVER = nkeys.PREFIX_BYTE_SERVER  # "N..."


class InvalidKey(ValueError):
    """Not a well-formed public nkey of the expected kind."""


def new_seed(role: Role) -> str:
    """A fresh seed ("SA..." or "SU..."): the secret from which the key pair derives."""
    return str(nkeys.encode_seed(secrets.token_bytes(32), int(role)).decode())


def key_pair(seed: str) -> nkeys.KeyPair:
    return nkeys.from_seed(bytearray(seed.strip().encode()))


def public_key(seed: str) -> str:
    return str(key_pair(seed).public_key.decode())


def sign(seed: str, data: bytes) -> bytes:
    return bytes(key_pair(seed).sign(data))


def _verify_key(public: str, role: Role | None) -> nacl.signing.VerifyKey:
    try:
        raw = base64.b32decode(public.encode() + b"=" * (-len(public) % 8))
    except (binascii.Error, ValueError):
        raise InvalidKey("not base32") from None
    if len(raw) != 35:
        raise InvalidKey("wrong length")
    body, checksum = raw[:-2], raw[-2:]
    if nkeys.crc16(bytearray(body)).to_bytes(2, "little") != checksum:
        raise InvalidKey("bad checksum")
    if role is not None and body[0] != int(role):
        raise InvalidKey(f"not a {role.name.lower()} key")
    return nacl.signing.VerifyKey(bytes(body[1:]))


def check_public_key(public: str, role: Role) -> None:
    """Raise InvalidKey unless `public` is a well-formed public key of that kind."""
    _verify_key(public, role)


def verify(public: str, data: bytes, signature: bytes, role: Role | None = None) -> bool:
    """True if `signature` is `public`'s signature of `data`; False for a bad signature
    or a malformed key."""
    try:
        _verify_key(public, role).verify(data, signature)
    except (InvalidKey, nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


def b64url_decode(text: str) -> bytes:
    """Base64url with or without padding (NATS signs nonces and JWTs without it)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
