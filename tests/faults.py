"""Faults a sweep's worker process can meet, as work items (importable by spawned workers: tests/ is on their path)."""
from __future__ import annotations


class Unreadable(Exception):
    """Pickles in the worker, but cannot be unpickled in the sweep's process (its __init__ wants two arguments)."""

    def __init__(self, what, why):
        super().__init__(f"{what}: {why}")


def raise_unreadable(config: dict, folder) -> dict:
    raise Unreadable("a run", "failed in a way that cannot be sent back")
