"""Faults a sweep's worker process can meet, as work items (importable by spawned workers: tests/ is on their path)."""
from __future__ import annotations

import os


class Unreadable(Exception):
    """Pickles in the worker, but cannot be unpickled in the sweep's process (its __init__ wants two arguments)."""

    def __init__(self, what, why):
        super().__init__(f"{what}: {why}")


def raise_unreadable(config: dict, dataset) -> dict:
    raise Unreadable("a run", "failed in a way that cannot be sent back")


def crash_the_swapped_seed_1(config: dict, dataset) -> dict:
    """Train `config`, except the swapped arm's seed 1, whose worker dies every time (as if killed for memory)."""
    from dropout_gluon.exercises import pool

    if (config["drop_prob1"], config["seed"]) == (0.5, 1):
        os._exit(1)
    return pool.work(config, dataset)
