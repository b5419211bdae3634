"""The audit commands: events, state, explain, what-if (reads of the log as an auditor)."""
