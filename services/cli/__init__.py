"""The `orchestrator` command line."""
