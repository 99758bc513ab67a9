"""aq's own brokers pass the task contract offered to third-party backends."""

from __future__ import annotations

from aq.testing.contract import TaskContract


class TestTaskContract(TaskContract):
    """Runs on the ``broker`` fixture of tests/conftest.py, over every transport."""
