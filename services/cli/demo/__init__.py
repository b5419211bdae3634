"""`orchestrator demo` and the demo agent it starts."""
