"""The leader lease and the duties of whoever holds it."""
