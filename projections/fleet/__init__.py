"""The fleet: the agents' health as the log says it, and the service catalog."""
