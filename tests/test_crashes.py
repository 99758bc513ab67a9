"""The crash policy: whom a worker's death is blamed on (aq.worker.crashes)."""

from __future__ import annotations

import pytest

import aq
from aq.worker.crashes import CrashPolicy


@pytest.mark.parametrize("count", [1, 2])
def test_a_main_worker_runs_a_message_again_after_one_death(count: int) -> None:
    assert CrashPolicy("isolate", 3).judge(count) == ("run", "")


@pytest.mark.parametrize(("max_deliveries", "count"), [(3, 3), (10, 3), (2, 2)])
def test_a_main_worker_isolates_a_message_whose_workers_died_often_enough(
    max_deliveries: int, count: int
) -> None:
    assert CrashPolicy("isolate", max_deliveries).judge(count) == ("isolate", "")


def test_an_isolation_worker_runs_a_message_that_has_not_died_alone() -> None:
    assert CrashPolicy("isolated", 3).judge(1) == ("run", "")


def test_an_isolation_worker_dead_letters_at_max_deliveries_deaths_counting_those_before() -> None:
    policy = CrashPolicy("isolated", 3)  # two deaths among others, then one alone
    verdict, reason = policy.judge(2)
    assert verdict == "dead"
    assert reason == (
        "crashed its worker process 3 times, the last 1 while running alone: this task is the cause"
    )


def test_an_isolation_worker_runs_a_message_again_until_its_deaths_reach_the_limit() -> None:
    policy = CrashPolicy("isolated", 5)  # 2 before isolation, so 3 alone
    assert [policy.judge(count)[0] for count in (1, 2, 3, 4)] == ["run", "run", "run", "dead"]


def test_a_message_never_runs_more_than_max_deliveries_times() -> None:
    for max_deliveries in range(2, 12):
        main, alone = (
            CrashPolicy("isolate", max_deliveries),
            CrashPolicy("isolated", max_deliveries),
        )
        runs, count = 0, 1
        while main.judge(count)[0] == "run":  # each run kills its worker
            runs, count = runs + 1, count + 1
        count = 1
        while alone.judge(count)[0] == "run":
            runs, count = runs + 1, count + 1
        assert runs == max_deliveries


def test_inline_judging_dead_letters_a_message_delivered_more_than_max_deliveries_times() -> None:
    policy = CrashPolicy("inline", 3)
    assert policy.judge(3) == ("run", "")
    assert policy.judge(4) == (
        "dead",
        "delivered 4 times without being settled (its workers keep dying)",
    )


def test_isolation_needs_max_deliveries_of_at_least_two() -> None:
    with pytest.raises(aq.ConfigurationError, match="max_deliveries must be at least 2"):
        CrashPolicy("isolate", 1)
