"""Agents: the Agent aggregate, its commands, and the failure detector (live and replayed)."""
