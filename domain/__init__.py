"""Pure decisions: aggregates, events, command models and policies. No I/O."""
