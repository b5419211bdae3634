"""Flow control: the Limit aggregate (concurrency, rate, fairness weight, admission
bounds) and its command."""
