"""Structured log lines: one ``event key=value`` line per task event."""

from __future__ import annotations

import logging

import pytest

import aq
from aq.logs import KeyValueFormatter, event
from aq.testing import running_worker


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aq.worker"]


async def test_received_and_succeeded_lines_carry_id_name_and_duration(
    broker: aq.Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aq")

    @broker.task(name="jobs.add")
    async def add(x: int, y: int) -> int:
        return x + y

    async with running_worker(broker):
        handle = await add.kiq(1, 2)
        await handle.result(timeout=5)
    lines = _lines(caplog)
    received = [line for line in lines if line.startswith("task.received ")]
    succeeded = [line for line in lines if line.startswith("task.succeeded ")]
    assert received == [f"task.received task_id={handle.id} name=jobs.add attempt=1"]
    assert len(succeeded) == 1
    assert succeeded[0].startswith(f"task.succeeded task_id={handle.id} name=jobs.add attempt=1 ")
    assert " duration=" in succeeded[0]


async def test_retried_and_failed_lines_carry_the_error(
    broker: aq.Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aq")

    @broker.task(name="jobs.fail", retries=1, retry_backoff=0.01)
    async def fail() -> None:
        raise ValueError("no good")

    async with running_worker(broker):
        handle = await fail.kiq()
        with pytest.raises(aq.TaskFailed):
            await handle.result(timeout=5)
    lines = _lines(caplog)
    [retried] = [line for line in lines if line.startswith("task.retried ")]
    [failed] = [line for line in lines if line.startswith("task.failed ")]
    assert f"task_id={handle.id}" in retried
    assert 'error="ValueError: no good"' in retried
    assert f"task_id={handle.id} name=jobs.fail attempt=2 duration=" in failed
    assert failed.endswith('error="ValueError: no good"')


def test_values_with_spaces_or_quotes_are_quoted(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("aq.test")
    caplog.set_level(logging.INFO, logger="aq.test")
    event(logger, logging.INFO, "thing.happened", plain="x", spaced='a "b" c', ratio=0.5)
    assert caplog.records[-1].getMessage() == (
        'thing.happened plain=x spaced="a \\"b\\" c" ratio=0.5'
    )


def test_nothing_is_formatted_when_the_level_is_off(caplog: pytest.LogCaptureFixture) -> None:
    class Explodes:
        def __str__(self) -> str:
            raise AssertionError("formatted although the level is disabled")

    caplog.set_level(logging.WARNING, logger="aq.test")
    event(logging.getLogger("aq.test"), logging.DEBUG, "quiet", value=Explodes())


def test_the_formatter_puts_time_level_and_logger_first() -> None:
    record = logging.LogRecord("aq.worker", logging.INFO, __file__, 1, "task.x a=1", None, None)
    line = KeyValueFormatter().format(record)
    assert line.endswith(" INFO aq.worker task.x a=1")
