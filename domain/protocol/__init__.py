"""What the orchestrator answers, as models: the shapes of its replies, from which the
protocol's JSON Schemas are made."""
