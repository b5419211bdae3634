"""NATS itself: the embedded nats-server, connections that reconnect, and TLS."""
