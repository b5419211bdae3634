"""Tasks: the Task aggregate, its commands, and placement."""
