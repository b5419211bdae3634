"""Adapters: NATS connection, streams, the JetStream event store, codec, embedded server."""
