"""The autoscaling decision: given the load, up, down or hold, and why."""

from __future__ import annotations

import pytest

import aq
from aq.worker.autoscale import Decision, History, Policy, Reading, WorkerLoad, decide

POLICY = Policy(1, 4, scale_down_after=30.0, cooldown=2.0)
BUSY = WorkerLoad(lag=0.8, in_flight=2, concurrency=2, cpu=0.97)
IDLE = WorkerLoad(lag=0.001, in_flight=0, concurrency=2, cpu=0.01)
CALM = WorkerLoad(lag=0.01, in_flight=1, concurrency=8, cpu=0.2)  # busy, but not saturated


def step(history: History, at: float, backlog: int | None, *workers: WorkerLoad | None) -> Decision:
    decision, _ = decide(POLICY, history, Reading(at, backlog, tuple(workers)))
    return decision


def seen(at: float, backlog: int, changed_at: float = float("-inf")) -> History:
    """What decide remembers after a reading of ``backlog`` at ``at``."""
    return History(changed_at, backlog, at)


def test_a_growing_backlog_with_saturated_workers_scales_up_saying_why() -> None:
    decision = step(seen(9.0, 100), 10.0, 120, BUSY)
    assert decision.change == 1
    assert decision.reason == (
        "backlog 120 and growing; workers saturated: event-loop lag 0.80 s, CPU 0.97 core, "
        "slots 2/2"
    )


def test_a_backlog_that_does_not_shrink_scales_up() -> None:
    assert step(seen(9.0, 50), 10.0, 50, BUSY).change == 1


def test_a_backlog_draining_too_slowly_scales_up() -> None:
    decision = step(seen(9.0, 42), 10.0, 40, BUSY)  # 2 a second: 20 s to empty
    assert decision.change == 1
    assert decision.reason.startswith("backlog 40 draining 2.0/s (about 20 s to empty); ")


def test_a_backlog_draining_fast_enough_holds() -> None:
    decision = step(seen(9.0, 60), 10.0, 40, BUSY)  # 20 a second: 2 s to empty
    assert decision == Decision(0, "backlog 40 draining fast enough")


@pytest.mark.parametrize(
    "load",
    [
        WorkerLoad(lag=0.5, in_flight=1, concurrency=8),
        WorkerLoad(lag=0.0, in_flight=1, concurrency=8, cpu=0.9),
        WorkerLoad(lag=0.0, in_flight=8, concurrency=8),
    ],
    ids=["event-loop-lag", "cpu", "every-slot-taken"],
)
def test_each_sign_of_saturation_is_enough(load: WorkerLoad) -> None:
    assert step(seen(9.0, 10), 10.0, 20, load).change == 1


def test_a_backlog_with_a_worker_not_saturated_holds() -> None:
    decision = step(seen(9.0, 10), 10.0, 20, BUSY, CALM)
    assert decision == Decision(0, "backlog 20 and growing, but not every worker is saturated")


def test_no_scale_up_past_the_maximum() -> None:
    decision = step(seen(9.0, 10), 10.0, 20, BUSY, BUSY, BUSY, BUSY)
    assert decision == Decision(0, "at the maximum of 4 processes")


def test_no_scale_up_while_a_worker_starts() -> None:
    assert step(seen(9.0, 10), 10.0, 20, BUSY, None) == Decision(0, "a worker is starting")


def test_no_scale_up_within_the_cooldown_of_the_last_change() -> None:
    decision = step(seen(9.0, 10, changed_at=8.5), 10.0, 20, BUSY, BUSY)
    assert decision == Decision(0, "cooling down after the last change")


def test_an_unknown_backlog_holds() -> None:
    assert step(History(), 10.0, None, BUSY) == Decision(0, "the backlog is unknown")


def test_the_newest_worker_idle_long_enough_with_no_backlog_scales_down() -> None:
    decision = step(History(idle_since=5.0), 40.0, 0, BUSY, IDLE)
    assert decision == Decision(-1, "backlog 0 and the newest worker idle for 35 s")


def test_idleness_counts_from_the_last_change() -> None:
    decision = step(History(idle_since=5.0, changed_at=30.0), 40.0, 0, BUSY, IDLE)
    assert decision == Decision(0, "idle for 10 s")


def test_a_busy_newest_worker_is_not_retired() -> None:
    decision, history = decide(POLICY, History(idle_since=5.0), Reading(40.0, 0, (IDLE, CALM)))
    assert decision == Decision(0, "the newest worker is busy")
    assert history.idle_since is None


def test_no_scale_down_below_the_minimum() -> None:
    assert step(History(idle_since=0.0), 100.0, 0, IDLE) == Decision(0, "at the minimum of 1")


def test_idleness_is_remembered_from_the_first_idle_reading_and_forgotten_with_a_backlog() -> None:
    _, history = decide(POLICY, History(), Reading(10.0, 0, (IDLE, IDLE)))
    assert history.idle_since == 10.0
    _, history = decide(POLICY, history, Reading(11.0, 3, (IDLE, IDLE)))
    assert history.idle_since is None


def test_a_change_is_remembered_and_starts_the_cooldown() -> None:
    decision, history = decide(POLICY, seen(9.0, 10), Reading(10.0, 20, (BUSY,)))
    assert decision.change == 1
    assert (history.changed_at, history.backlog, history.backlog_at) == (10.0, 20, 10.0)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("4,1", "--autoscale MIN,MAX needs MIN <= MAX, not 4,1: write --autoscale 1,4"),
        ("0,2", "--autoscale MIN must be at least 1 (one worker always runs), not 0"),
        ("x", "--autoscale takes MIN,MAX, two whole numbers of processes such as 1,4; not 'x'"),
        ("1,2,3", "--autoscale takes MIN,MAX"),
    ],
)
def test_a_bad_autoscale_is_refused_saying_what_to_write(text: str, problem: str) -> None:
    with pytest.raises(aq.ConfigurationError) as refused:
        Policy.parse(text)
    assert str(refused.value).startswith(problem)


def test_autoscale_parses_min_and_max() -> None:
    policy = Policy.parse(" 2, 6", scale_down_after=5)
    assert (policy.minimum, policy.maximum, policy.scale_down_after) == (2, 6, 5)
