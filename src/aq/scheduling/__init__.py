"""Periodic tasks: when they are due.

:mod:`aq.scheduling.spec` holds the pure part, schedule specs and the rules
for jitter and missed fires; the scheduler process that acts on them builds on it.
"""

from aq.scheduling.spec import (
    MAX_WALK,
    MIN_INTERVAL,
    Cron,
    Every,
    ScheduleSpec,
    cron,
    due_fires,
    every,
    jitter_for,
    spec_from_json,
)

__all__ = [
    "MAX_WALK",
    "MIN_INTERVAL",
    "Cron",
    "Every",
    "ScheduleSpec",
    "cron",
    "due_fires",
    "every",
    "jitter_for",
    "spec_from_json",
]
