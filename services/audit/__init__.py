"""Audit and replay: the log read back as state at a moment, causal chains, what-ifs."""
