"""``aq.Retry`` takes only a delay a broker can schedule."""

from __future__ import annotations

import math

import pytest

import aq
from aq.testing import running_worker
from tests.conftest import broker_url

BAD_DELAYS = [-1.0, math.nan, math.inf, -math.inf]


@pytest.mark.parametrize("delay", [*BAD_DELAYS, True, "5"], ids=repr)
def test_retry_refuses_a_delay_that_is_not_a_finite_number_of_seconds(delay: object) -> None:
    with pytest.raises(aq.ConfigurationError, match="delay must be a finite number of seconds"):
        aq.Retry(delay=delay)  # type: ignore[arg-type]


@pytest.mark.parametrize("delay", [None, 0, 0.0, 2.5, 3600])
def test_retry_keeps_a_valid_delay(delay: float | None) -> None:
    assert aq.Retry(delay=delay).delay == delay


@pytest.mark.parametrize("delay", BAD_DELAYS, ids=repr)
async def test_a_retry_with_a_bad_delay_fails_the_task_saying_why(delay: float) -> None:
    broker = aq.Broker(broker_url("memory"))

    @broker.task(retries=1, retry_backoff=0.01)
    async def impatient() -> None:
        raise aq.Retry(delay=delay)

    @broker.task
    async def ping() -> str:
        return "pong"

    async with broker, running_worker(broker) as worker:
        with pytest.raises(aq.TaskFailed) as info:
            await (await impatient.kiq()).result(timeout=5)
        assert await (await ping.kiq()).result(timeout=5) == "pong"  # the worker is fine
        await worker.wait_idle()
        [dead] = await broker.admin.dead_letters("default")
    assert info.value.remote_type == "aq.errors.ConfigurationError"
    assert info.value.remote_message == (
        f"aq.Retry delay must be a finite number of seconds, 0 or more, not {delay!r}"
    )
    assert dead.reason.startswith("failed after 2 attempt(s): ConfigurationError: aq.Retry delay")
