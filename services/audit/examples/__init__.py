"""Worked examples of auditors' own projections of the orchestrator's log."""
