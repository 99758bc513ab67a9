"""The pytest plugin gives application tests a broker and a running worker."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_the_plugin_runs_tasks_sent_in_a_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["aq.testing.pytest_plugin"]')
    pytester.makepyfile(
        """
        import aq

        async def test_add(aq_broker: aq.Broker, aq_worker: aq.Worker) -> None:
            @aq_broker.task
            async def add(x: int, y: int) -> int:
                return x + y

            assert await (await add.kiq(2, 2)).result(timeout=5) == 4
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "asyncio_mode=auto")
    result.assert_outcomes(passed=1)
