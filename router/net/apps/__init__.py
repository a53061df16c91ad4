"""Command-line apps built on the engine: `python -m router.net APP ...`."""
