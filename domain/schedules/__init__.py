"""Schedules: the Schedule aggregate, its commands, and cron expressions."""
