"""The dashboard's memory, on its own: task records built from events in any
order, the bound on how many are kept, paging and search, the hour's
timeline, and the board that joins them and wakes the live streams."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aq.monitor.wire import Event
from aq.web.board import Board
from aq.web.history import MAX_ATTEMPTS, MAX_DATA, History, TaskRecord, Timeline, clip

T0 = 1_700_000_000.0


def event(kind: str, ts: float, task_id: str | None = "t1", **fields: Any) -> Event:
    """A task event as a watcher decodes it (``fields`` holds everything)."""
    data: dict[str, Any] = {"type": kind, "ts": ts, "name": "app.add", "queue": "default"}
    data["attempt"] = 1
    if task_id is not None:
        data["task_id"] = task_id
    data.update(fields)
    return Event(kind, ts, data)


def fed(history: History, *events: Event) -> TaskRecord:
    """Feed ``events``; the record the last one touched."""
    record = None
    for item in events:
        record = history.feed(item)
    assert record is not None
    return record


def life(task_id: str, ts: float, *, attempt: int = 1, worker: str = "w1") -> list[Event]:
    """The events of one attempt that succeeds, producer first."""
    return [
        event("task-sent", ts, task_id, attempt=attempt),
        event("task-received", ts + 1, task_id, attempt=attempt, worker=worker),
        event("task-started", ts + 2, task_id, attempt=attempt, worker=worker),
        event("task-succeeded", ts + 5, task_id, attempt=attempt, worker=worker, runtime=3.0),
    ]


# -- one task's life ------------------------------------------------------------------


def test_a_task_that_succeeds_has_one_complete_attempt() -> None:
    history = History()
    record = fed(history, *life("t1", T0))
    assert record.state == "succeeded"
    assert record.name == "app.add"
    assert record.queue == "default"
    assert record.sent == T0
    assert record.worker == "w1"
    assert record.runtime == 3.0
    assert record.updated == T0 + 5
    assert len(record.attempts) == 1
    attempt = record.attempts[0]
    assert attempt.attempt == 1
    assert (attempt.received, attempt.started, attempt.ended) == (T0 + 1, T0 + 2, T0 + 5)
    assert attempt.outcome == "succeeded"
    assert attempt.runtime == 3.0
    assert attempt.worker == "w1"
    assert record.to_json()["attempts"][0]["outcome"] == "succeeded"
    assert history.get("t1") is record
    assert len(history) == 1


def test_each_event_moves_the_state_forward() -> None:
    history = History()
    states = [fed(history, item).state for item in life("t1", T0)]
    assert states == ["queued", "received", "running", "succeeded"]


def test_a_task_sent_with_an_eta_is_scheduled_until_received() -> None:
    history = History()
    record = fed(history, event("task-sent", T0, eta=T0 + 60))
    assert (record.state, record.eta) == ("scheduled", T0 + 60)
    record = fed(history, event("task-received", T0 + 61, worker="w1", eta=T0 + 60))
    assert (record.state, record.eta) == ("received", None)


def test_the_workers_news_before_the_producers_does_not_move_the_state_back() -> None:
    history = History()
    sent, received, started, succeeded = life("t1", T0)
    record = fed(history, received, started, sent)
    assert record.state == "running"
    assert record.sent == T0
    record = fed(history, succeeded)
    assert record.state == "succeeded"
    assert len(record.attempts) == 1


def test_a_late_start_does_not_undo_the_end_of_the_same_attempt() -> None:
    history = History()
    sent, received, started, succeeded = life("t1", T0)
    record = fed(history, sent, received, succeeded, started)
    assert record.state == "succeeded"
    assert record.attempts[0].started == T0 + 2  # still recorded on the attempt
    assert record.attempts[0].outcome == "succeeded"


def test_news_of_an_earlier_attempt_does_not_change_the_state() -> None:
    history = History()
    record = fed(
        history,
        event("task-received", T0 + 10, attempt=2, worker="w2"),
        event("task-started", T0 + 11, attempt=2, worker="w2"),
        event("task-started", T0 + 1, attempt=1, worker="w1"),
    )
    assert record.state == "running"
    assert record.attempt == 2
    assert record.worker == "w2"
    assert [a.attempt for a in record.attempts] == [2, 1]


def test_late_news_of_an_earlier_attempt_leaves_the_newest_attempts_figures() -> None:
    history = History()
    record = fed(
        history,
        event("task-received", T0 + 10, attempt=2, worker="w2"),
        event("task-started", T0 + 11, attempt=2, worker="w2"),
        event("task-succeeded", T0 + 12, attempt=2, worker="w2", runtime=1.0),
        event(
            "task-retried",
            T0 + 5,
            attempt=1,
            worker="w1",
            runtime=4.0,
            error={"type": "OSError", "message": "boom"},
            eta=T0 + 9,
        ),
    )
    assert record.state == "succeeded"
    assert record.attempts[-1].outcome == "retrying"  # the attempt itself is recorded
    assert record.runtime == 1.0
    assert record.error is None
    assert record.eta is None


def test_a_late_task_sent_with_an_eta_does_not_reschedule_a_finished_task() -> None:
    history = History()
    record = fed(
        history,
        event("task-received", T0 + 61, worker="w1", eta=T0 + 60),
        event("task-started", T0 + 62, worker="w1"),
        event("task-succeeded", T0 + 63, worker="w1", runtime=1.0),
        event("task-sent", T0, eta=T0 + 60),
    )
    assert record.state == "succeeded"
    assert record.sent == T0
    assert record.eta is None


def test_a_retry_then_a_failure_keeps_both_attempts() -> None:
    history = History()
    error = {"type": "ValueError", "message": "bad input"}
    record = fed(
        history,
        event("task-sent", T0),
        event("task-received", T0 + 1, worker="w1"),
        event("task-started", T0 + 2, worker="w1"),
        event("task-retried", T0 + 3, worker="w1", runtime=1.0, error=error, eta=T0 + 30),
    )
    assert record.state == "retrying"
    assert record.eta == T0 + 30
    assert record.error == error

    record = fed(history, event("task-received", T0 + 30, attempt=2, worker="w2"))
    assert record.state == "received"
    assert record.attempt == 2
    assert record.eta is None
    assert record.worker == "w2"

    failure = {"type": "ValueError", "message": "still bad"}
    record = fed(
        history,
        event("task-started", T0 + 31, attempt=2, worker="w2"),
        event("task-failed", T0 + 32, attempt=2, worker="w2", runtime=1.5, error=failure),
    )
    assert record.state == "failed"
    assert record.error == failure
    assert record.runtime == 1.5
    assert [a.attempt for a in record.attempts] == [1, 2]
    assert [a.outcome for a in record.attempts] == ["retrying", "failed"]
    assert record.attempts[0].error == error
    assert record.attempts[1].error == failure
    assert [a.worker for a in record.attempts] == ["w1", "w2"]


def test_an_error_is_kept_as_type_and_message_only() -> None:
    history = History()
    error = {"type": "E" * 500, "message": "m" * 5000, "traceback": "secret frames"}
    record = fed(history, event("task-failed", T0, worker="w1", error=error))
    assert record.error is not None
    assert set(record.error) == {"type", "message"}
    assert record.error["type"] == "E" * 200
    assert record.error["message"] == "m" * 1000


def test_a_failed_task_that_is_dead_lettered_says_why() -> None:
    history = History()
    record = fed(
        history,
        event("task-received", T0, worker="w1"),
        event("task-failed", T0 + 1, worker="w1", error={"type": "E", "message": "m"}),
        event("task-dead-lettered", T0 + 2, worker="w1", reason="max retries exceeded"),
    )
    assert record.state == "dead-lettered"
    assert record.reason == "max retries exceeded"
    assert record.attempts[0].outcome == "failed"  # dead-lettering is not an attempt's end
    assert len(record.attempts) == 1


def test_a_late_failure_does_not_undo_a_dead_letter() -> None:
    history = History()
    record = fed(
        history,
        event("task-dead-lettered", T0 + 2, worker="w1", reason="poison"),
        event("task-failed", T0 + 1, worker="w1"),
    )
    assert record.state == "dead-lettered"


@pytest.mark.parametrize("end", ["task-failed", "task-dead-lettered"])
def test_a_dead_letter_sent_back_runs_again_as_a_new_run_of_its_attempt(end: str) -> None:
    history = History()
    fed(
        history,
        event("task-received", T0, worker="w1"),
        event("task-started", T0 + 1, worker="w1"),
        event("task-failed", T0 + 2, worker="w1", error={"type": "E", "message": "m"}),
        event(end, T0 + 3, worker="w1", reason="failed after 1 attempt(s)"),
    )
    # Requeued from the dead letters: the same message, so the same attempt number.
    running = fed(history, event("task-received", T0 + 60, worker="w2"))
    assert running.state == "received"
    record = fed(
        history,
        event("task-started", T0 + 61, worker="w2"),
        event("task-succeeded", T0 + 62, worker="w2", runtime=0.5),
    )
    assert record.state == "succeeded"
    assert record.worker == "w2"
    assert record.runtime == 0.5
    assert [(a.attempt, a.outcome, a.worker) for a in record.attempts] == [
        (1, "failed", "w1"),
        (1, "succeeded", "w2"),
    ]


def test_events_without_a_task_or_of_a_worker_are_ignored() -> None:
    history = History()
    assert history.feed(event("task-sent", T0, task_id=None)) is None
    assert history.feed(Event("task-sent", T0, {"type": "task-sent", "task_id": 5})) is None
    assert history.feed(event("worker-heartbeat", T0, worker="w1")) is None
    assert history.feed(event("worker-online", T0, worker="w1")) is None
    assert history.feed(event("no-such-event", T0)) is None
    assert len(history) == 0
    assert history.seq == 0


def test_a_bad_attempt_number_counts_as_the_current_attempt() -> None:
    history = History()
    record = fed(
        history,
        event("task-received", T0, worker="w1", attempt=0),
        event("task-started", T0 + 1, worker="w1", attempt="2"),
    )
    assert record.attempt == 1
    assert [a.attempt for a in record.attempts] == [1]
    assert record.state == "running"


# -- the bound ------------------------------------------------------------------------


def test_past_the_limit_the_least_recently_touched_task_is_forgotten() -> None:
    history = History(limit=3)
    for n in range(5):
        history.feed(event("task-sent", T0 + n, f"t{n}"))
    assert len(history) == 3
    assert history.evicted == 2
    assert [r.id for r in history.newest()] == ["t4", "t3", "t2"]
    assert history.get("t0") is None
    assert history.get("t1") is None

    history.feed(event("task-received", T0 + 10, "t2", worker="w1"))  # t2 is touched again
    assert [r.id for r in history.newest()] == ["t2", "t4", "t3"]
    history.feed(event("task-sent", T0 + 11, "t5"))
    assert history.evicted == 3
    assert history.get("t3") is None
    touched = history.get("t2")
    assert touched is not None
    assert touched.state == "received"
    assert [r.id for r in history.newest()] == ["t5", "t2", "t4"]


def test_a_history_must_hold_a_task() -> None:
    with pytest.raises(ValueError, match="at least one"):
        History(limit=0)


def test_every_touch_takes_the_next_sequence_number() -> None:
    history = History()
    first = fed(history, event("task-sent", T0, "a"))
    assert (first.seq, history.seq) == (1, 1)
    fed(history, event("task-sent", T0, "b"))
    again = fed(history, event("task-received", T0 + 1, "a", worker="w1"))
    assert again is first
    assert (first.seq, history.seq) == (3, 3)


def test_attempts_are_capped_keeping_the_first_and_the_newest() -> None:
    history = History()
    for n in range(1, MAX_ATTEMPTS + 6):
        history.feed(event("task-received", T0 + n, attempt=n, worker="w1"))
    record = history.get("t1")
    assert record is not None
    assert len(record.attempts) == MAX_ATTEMPTS
    numbers = [a.attempt for a in record.attempts]
    assert numbers[0] == 1
    assert numbers[1:] == list(range(7, MAX_ATTEMPTS + 6))
    assert record.attempt == MAX_ATTEMPTS + 5


# -- arguments and results ------------------------------------------------------------


def test_short_arguments_and_results_are_kept_as_they_are() -> None:
    history = History()
    record = fed(
        history,
        event("task-sent", T0, args=[1, 2], kwargs={"x": "y"}),
        event("task-succeeded", T0 + 1, worker="w1", result={"sum": 3}),
    )
    assert record.args == [1, 2]
    assert record.kwargs == {"x": "y"}
    assert record.result == {"sum": 3}
    assert record.has_result


def test_long_arguments_and_results_are_clipped_to_a_string() -> None:
    history = History()
    big = ["x" * 100] * 100
    record = fed(
        history,
        event("task-received", T0, worker="w1", args=big, kwargs={"k": big}),
        event("task-succeeded", T0 + 1, worker="w1", result=big),
    )
    for value in (record.args, record.kwargs, record.result):
        assert isinstance(value, str)
        assert len(value) <= MAX_DATA + 1
        assert value.endswith("\u2026")
    assert isinstance(record.args, str)
    assert record.args.startswith('["xxx')


def test_a_task_without_a_result_field_has_none() -> None:
    history = History()
    record = fed(history, *life("t1", T0))
    assert record.result is None
    assert not record.has_result


def test_clip() -> None:
    assert clip([1, "two", {"three": 3}]) == [1, "two", {"three": 3}]
    assert clip({1: "a"}) == {1: "a"}  # keys that are not strings are fine
    assert clip(None) is None
    exact = "a" * (MAX_DATA - 2)  # its JSON, with the quotes, is exactly MAX_DATA long
    assert clip(exact) == exact
    clipped = clip("a" * MAX_DATA)
    assert clipped == '"' + "a" * (MAX_DATA - 1) + "\u2026"
    assert clip("abcdef", 4) == '"abc\u2026'
    assert clip({"é": "ü" * 10}, 8) == '{"é":"\u2026'  # never half a character
    assert clip(object(), 5) == "<obje"  # not JSON: the start of its repr


# -- reading ------------------------------------------------------------------------


def test_changes_since_gives_what_was_touched_after_newest_first() -> None:
    history = History()
    for n in range(5):
        history.feed(event("task-sent", T0 + n, f"t{n}"))
    seen = history.seq
    assert history.changes_since(seen, 10) == []
    history.feed(event("task-received", T0 + 10, "t1", worker="w1"))
    history.feed(event("task-sent", T0 + 11, "t5"))
    history.feed(event("task-received", T0 + 12, "t3", worker="w1"))
    assert [r.id for r in history.changes_since(seen, 10)] == ["t3", "t5", "t1"]
    assert [r.id for r in history.changes_since(seen, 2)] == ["t3", "t5"]
    assert [r.id for r in history.changes_since(0, 100)] == [
        "t3",
        "t5",
        "t1",
        "t4",
        "t2",
        "t0",
    ]
    assert history.changes_since(0, 0) == []


def _searchable() -> History:
    history = History()
    names = ["app.add", "app.mul", "reports.build", "app.add", "reports.build_all"]
    for n, name in enumerate(names):
        history.feed(event("task-sent", T0 + n, f"{'ab' if n % 2 else 'cd'}{n}", name=name))
    history.feed(event("task-failed", T0 + 10, "ab1", name="app.mul", worker="w1"))
    history.feed(event("task-failed", T0 + 11, "cd2", name="reports.build", worker="w1"))
    return history


def test_search_by_id_prefix_or_name_substring() -> None:
    history = _searchable()
    found, total = history.search(text="AB")  # case does not matter
    assert ([r.id for r in found], total) == (["ab1", "ab3"], 2)
    found, total = history.search(text="  cd0 ")
    assert ([r.id for r in found], total) == (["cd0"], 1)
    found, total = history.search(text="b1")  # not a prefix of an id, nor in a name
    assert (found, total) == ([], 0)
    found, total = history.search(text="build")
    assert ([r.id for r in found], total) == (["cd2", "cd4"], 2)
    found, total = history.search()
    assert total == 5
    assert [r.id for r in found] == ["cd2", "ab1", "cd4", "ab3", "cd0"]  # newest first


def test_search_by_exact_name_and_state() -> None:
    history = _searchable()
    found, total = history.search(name="reports.build")
    assert ([r.id for r in found], total) == (["cd2"], 1)
    found, total = history.search(name="app")
    assert (found, total) == ([], 0)
    found, total = history.search(state="failed")
    assert ([r.id for r in found], total) == (["cd2", "ab1"], 2)
    found, total = history.search(state="queued", name="app.add")
    assert ([r.id for r in found], total) == (["ab3", "cd0"], 2)
    found, total = history.search(text="app", state="failed")
    assert ([r.id for r in found], total) == (["ab1"], 1)


def test_search_pages_and_counts_everything_that_matched() -> None:
    history = _searchable()
    everyone = [r.id for r in history.search()[0]]
    pages = [history.search(offset=offset, limit=2) for offset in (0, 2, 4, 6)]
    assert [[r.id for r in found] for found, _ in pages] == [
        everyone[0:2],
        everyone[2:4],
        everyone[4:],
        [],
    ]
    assert {total for _, total in pages} == {5}


def test_a_workflow_is_its_root_and_its_steps_oldest_first() -> None:
    history = History()
    history.feed(event("task-sent", T0, "root", root="root", step=0))
    history.feed(event("task-sent", T0 + 1, "other"))
    history.feed(event("task-received", T0 + 3, "s2", root="root", step=2, worker="w1"))
    history.feed(event("task-sent", T0 + 2, "s1", root="root", step=1))
    history.feed(event("task-received", T0 + 4, "root", worker="w1"))  # touched last
    steps = history.workflow("root")
    assert [r.id for r in steps] == ["root", "s1", "s2"]
    assert [r.step for r in steps] == [0, 1, 2]
    assert [r.id for r in history.workflow("root", limit=2)] == ["root", "s1"]
    assert history.workflow("nothing") == []


# -- the timeline ---------------------------------------------------------------------


def test_the_timeline_counts_per_ten_seconds() -> None:
    timeline = Timeline()
    for ts in (T0, T0 + 3, T0 + 9.99):
        timeline.count(ts, failed=False)
    timeline.count(T0 + 5, failed=True)
    timeline.count(T0 + 10, failed=False)
    timeline.count(T0 + 25, failed=True)
    assert timeline.points(now=T0 + 30) == [
        [T0, 4.0, 1.0],
        [T0 + 10, 1.0, 0.0],
        [T0 + 20, 1.0, 1.0],
    ]


def test_the_timeline_shows_only_the_last_hour() -> None:
    timeline = Timeline()
    timeline.count(T0, failed=False)
    timeline.count(T0 + 1800, failed=True)
    assert timeline.points(now=T0 + 3600) == [[T0, 1.0, 0.0], [T0 + 1800, 1.0, 1.0]]
    assert timeline.points(now=T0 + 3601) == [[T0 + 1800, 1.0, 1.0]]
    assert timeline.points(now=T0 + 5400) == [[T0 + 1800, 1.0, 1.0]]
    assert timeline.points(now=T0 + 5401) == []


def test_the_timeline_points_are_copies() -> None:
    timeline = Timeline()
    timeline.count(T0, failed=False)
    timeline.points(now=T0)[0][1] = 99
    assert timeline.points(now=T0) == [[T0, 1.0, 0.0]]


def test_late_news_lands_in_its_own_bucket_if_still_kept() -> None:
    timeline = Timeline()
    timeline.count(T0, failed=False)
    timeline.count(T0 + 20, failed=False)
    timeline.count(T0 + 3, failed=True)  # late: its bucket is still there
    assert timeline.points(now=T0 + 30) == [[T0, 2.0, 1.0], [T0 + 20, 1.0, 0.0]]


def test_late_news_without_a_bucket_does_not_land_in_the_newest() -> None:
    timeline = Timeline()
    timeline.count(T0, failed=False)
    timeline.count(T0 + 20, failed=False)
    timeline.count(T0 + 13, failed=True)
    timeline.count(T0 - 7200, failed=False)  # two hours old
    points = timeline.points(now=T0 + 30)
    assert [T0 + 20, 1.0, 0.0] in points
    assert sum(p[1] for p in points) == 3.0


# -- the board ------------------------------------------------------------------------


def test_the_board_joins_figures_history_and_timeline() -> None:
    board = Board("memory://board", history=2)
    online = {"type": "worker-online", "ts": T0, "worker": "w1", "host": "h", "freq": 2.0}
    board.feed(Event("worker-online", T0, online))
    for n in range(3):
        for item in life(f"t{n}", T0 + n):
            board.feed(item)
    board.feed(event("task-failed", T0 + 8, "t9", worker="w1", error={"type": "E"}))
    overview = board.overview(now=T0 + 9)
    assert overview["title"] == "memory://board"
    assert overview["now"] == T0 + 9
    assert overview["seq"] == board.history.seq == 13
    assert overview["remembered"] == 2
    assert overview["limit"] == 2
    assert overview["forgotten"] == 2
    assert overview["timeline"] == [[T0, 4.0, 1.0]]
    assert overview["online"] == 1
    assert [w["worker"] for w in overview["workers"]] == ["w1"]
    assert overview["failures"] == 1
    assert overview["problem"] is None
    tasks = {t["name"]: t for t in overview["tasks"]}
    assert (tasks["app.add"]["succeeded"], tasks["app.add"]["failed"]) == (3, 1)


def test_the_board_counts_cancelled_tasks_as_finished_not_failed() -> None:
    board = Board("b")
    board.feed(event("task-cancelled", T0, worker="w1"))
    board.feed(event("task-retried", T0 + 1, worker="w1"))
    board.feed(event("task-expired", T0 + 2, worker="w1"))
    assert board.overview(now=T0 + 5)["timeline"] == [[T0, 1.0, 0.0]]


def test_live_gives_what_changed_newest_first_and_whether_there_is_more() -> None:
    board = Board("b")
    for n in range(4):
        board.feed(event("task-sent", T0 + n, f"t{n}"))
    data = board.live(0, 3, now=T0 + 5)
    assert [c["id"] for c in data["changed"]] == ["t3", "t2", "t1"]
    assert data["more"] is True
    assert data["seq"] == 4
    assert data["changed"][0] == next(board.history.newest()).summary()

    data = board.live(0, 4, now=T0 + 5)
    assert [c["id"] for c in data["changed"]] == ["t3", "t2", "t1", "t0"]
    assert data["more"] is False

    board.feed(event("task-received", T0 + 6, "t1", worker="w1"))
    data = board.live(4, 3, now=T0 + 7)
    assert [(c["id"], c["state"]) for c in data["changed"]] == [("t1", "received")]
    assert data["more"] is False
    assert board.live(data["seq"], 3, now=T0 + 7)["changed"] == []


def test_a_tick_wakes_only_when_something_changed_or_it_has_been_quiet() -> None:
    board = Board("b")
    assert board.tick(now=100.0) is True  # the first tick
    assert board.tick(now=100.5) is False
    board.feed(event("task-sent", T0))
    assert board.tick(now=101.0) is True
    assert board.tick(now=101.5) is False
    assert board.tick(now=105.9) is False
    assert board.tick(now=106.0) is True  # keepalive
    assert board.tick(now=106.5) is False


async def test_next_tick_waits_for_a_tick_that_wakes() -> None:
    board = Board("b")
    assert board.tick(now=100.0) is True
    waiter = asyncio.ensure_future(board.next_tick())
    await asyncio.sleep(0)  # let it start waiting (a yield, not a pause)
    assert not waiter.done()
    assert board.tick(now=100.1) is False  # nothing changed: no wake
    await asyncio.sleep(0)
    assert not waiter.done()
    board.feed(event("task-sent", T0))
    assert board.tick(now=100.2) is True
    await asyncio.wait_for(waiter, timeout=5)

    again = asyncio.ensure_future(board.next_tick())  # a new wait needs a new tick
    await asyncio.sleep(0)
    assert not again.done()
    assert board.tick(now=200.0) is True
    await asyncio.wait_for(again, timeout=5)


async def test_every_waiting_stream_is_woken() -> None:
    board = Board("b")
    waiters = [asyncio.ensure_future(board.next_tick()) for _ in range(3)]
    await asyncio.sleep(0)
    board.feed(event("task-sent", T0))
    assert board.tick(now=1.0) is True
    await asyncio.wait_for(asyncio.gather(*waiters), timeout=5)
