"""TLS from certificate files named in settings: the read API's server side, and the
NATS connections' client side (the CA to trust, and a client certificate if NATS wants
one)."""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """For serving HTTPS; None (plain HTTP) when no certificate is given."""
    if cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def client_context(ca: Path | None, cert: Path | None = None,
                   key: Path | None = None) -> ssl.SSLContext | None:
    """For connecting to a TLS NATS: trust `ca` (or the system's), present `cert` if
    given; None when neither is given (the URL's scheme then decides)."""
    if ca is None and cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context
