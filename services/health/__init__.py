"""Heartbeat intake and the failure detector."""
