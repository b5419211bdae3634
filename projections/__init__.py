"""Read models: pure `apply(event)` functions over the log, and the runner that feeds them."""
