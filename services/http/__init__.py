"""The read API, its limits and its document, and the dashboard."""
