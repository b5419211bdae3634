"""Identities: the people, tools and agents that may connect, their enrollment policies,
and the connections refused."""
