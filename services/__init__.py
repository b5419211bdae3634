"""The processes: command handlers, health monitor, read API, CLI and their wiring."""
