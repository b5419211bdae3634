"""Identities, the NATS auth callout, and the read API's tokens."""
