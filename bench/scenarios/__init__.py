"""One module per scenario; each exposes `async def run(size) -> dict[str, float]`."""
