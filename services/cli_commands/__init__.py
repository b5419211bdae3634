"""The operator's everyday commands, beside `up`, `agent` and the audits: reads of the
fleet through the read API, writes over NATS as the CLI's identity, shell completion."""
