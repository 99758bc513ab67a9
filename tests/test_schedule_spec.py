"""Specification of aq.scheduling.spec: when periodic tasks are due.

Daylight-saving days used below (2026):

- Europe/Paris: spring 29 March (02:00 CET jumps to 03:00 CEST); autumn
  25 October (03:00 CEST falls back to 02:00 CET, so 02:00-03:00 repeats).
- America/New_York: spring 8 March (02:00 EST jumps to 03:00 EDT); autumn
  1 November (02:00 EDT falls back to 01:00 EST, so 01:00-02:00 repeats).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from aq.errors import ConfigurationError
from aq.scheduling import (
    MAX_WALK,
    Cron,
    Every,
    ScheduleSpec,
    cron,
    due_fires,
    every,
    jitter_for,
    spec_from_json,
)

PARIS = "Europe/Paris"
NEW_YORK = "America/New_York"
SPRING = {PARIS: (2026, 3, 29), NEW_YORK: (2026, 3, 8)}
AUTUMN = {PARIS: (2026, 10, 25), NEW_YORK: (2026, 11, 1)}
YEAR = 365 * 86400


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    """The UNIX timestamp of a UTC date and time."""
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def fire_times(spec: ScheduleSpec, zone: str, day: tuple[int, int, int]) -> list[float]:
    """The due times of ``spec`` during one local day of ``zone``."""
    midnight = datetime(*day, tzinfo=ZoneInfo(zone))
    end = (midnight + timedelta(days=1)).timestamp()
    found, due = [], spec.next_after(midnight.timestamp() - 1)
    while due < end:
        found.append(due)
        due = spec.next_after(due)
    return found


def fires_on(spec: ScheduleSpec, zone: str, day: tuple[int, int, int]) -> list[str]:
    """The fires of ``spec`` during one local day, as 'HH:MM+offset' local times."""
    tz = ZoneInfo(zone)
    return [datetime.fromtimestamp(t, tz).strftime("%H:%M%z") for t in fire_times(spec, zone, day)]


def gaps(spec: ScheduleSpec, zone: str, day: tuple[int, int, int]) -> set[float]:
    """The distinct real-time gaps, in seconds, between the fires of one local day."""
    times = fire_times(spec, zone, day)
    return {later - earlier for earlier, later in itertools.pairwise(times)}


# every ---------------------------------------------------------------------------------


def test_every_due_times_are_multiples_of_the_interval_since_the_epoch() -> None:
    assert every(30).next_after(1_000_000_007.5) == 1_000_000_020.0
    assert every(hours=1).next_after(utc(2026, 5, 1, 10, 59, 59)) == utc(2026, 5, 1, 11)


def test_every_next_after_a_due_time_is_the_following_one() -> None:
    assert every(30).next_after(60.0) == 90.0
    assert every(30).previous_before(60.0) == 30.0


def test_every_keeps_to_its_multiples_with_a_fractional_interval() -> None:
    spec = every(0.7)  # 3 * 0.7 / 0.7 rounds to 2.9999999999999996
    assert spec.next_after(3 * 0.7) == 4 * 0.7
    assert spec.previous_before(3 * 0.7) == 2 * 0.7


def test_every_sums_its_keyword_units() -> None:
    assert every(hours=1, minutes=30).seconds == 5400.0
    assert every(days=1, seconds=1).seconds == 86401.0


def test_every_accepts_a_timedelta() -> None:
    assert every(timedelta(minutes=5)) == every(300)


def test_every_without_an_interval_says_how_to_give_one() -> None:
    with pytest.raises(ConfigurationError, match=r"every\(30\).*every\(minutes=1, seconds=30\)"):
        every()


def test_every_with_an_interval_and_units_says_to_give_one() -> None:
    with pytest.raises(ConfigurationError, match=r"one interval.*not both"):
        every(30, minutes=1)


@pytest.mark.parametrize("interval", [0, -5, math.nan, math.inf, timedelta(0), "30"])
def test_every_rejects_an_interval_that_is_not_a_positive_finite_number(interval: object) -> None:
    with pytest.raises(ConfigurationError, match=r"finite number of seconds.*every\(30\)"):
        every(interval)  # type: ignore[arg-type]


def test_every_rejects_an_interval_under_a_millisecond() -> None:
    with pytest.raises(ConfigurationError, match=r"at least 0\.001"):
        every(1e-6)


@pytest.mark.parametrize("units", [{"minutes": -1}, {"hours": math.nan}, {"days": True}])
def test_every_rejects_a_unit_that_is_not_a_finite_number_of_0_or_more(
    units: dict[str, float],
) -> None:
    name = next(iter(units))
    with pytest.raises(ConfigurationError, match=rf"every\({name}=\.\.\.\).*0 or more"):
        every(**units)


@pytest.mark.parametrize("jitter", [-1, math.nan, math.inf])
@pytest.mark.parametrize("kind", ["every", "cron"])
def test_a_negative_or_non_finite_jitter_is_rejected(kind: str, jitter: float) -> None:
    with pytest.raises(ConfigurationError, match="jitter must be a finite number of seconds"):
        every(30, jitter=jitter) if kind == "every" else cron("* * * * *", jitter=jitter)


# cron ----------------------------------------------------------------------------------


def test_cron_fires_at_the_next_matching_minute() -> None:
    spec = cron("*/5 * * * *")
    assert spec.next_after(utc(2026, 1, 1, 0, 2, 30)) == utc(2026, 1, 1, 0, 5)
    assert spec.next_after(utc(2026, 1, 1, 0, 5)) == utc(2026, 1, 1, 0, 10)
    assert spec.previous_before(utc(2026, 1, 1, 0, 5)) == utc(2026, 1, 1, 0, 0)


def test_cron_matches_the_local_time_of_its_zone() -> None:
    spec = cron("0 9 * * *", tz=PARIS)
    assert spec.next_after(utc(2026, 1, 15)) == utc(2026, 1, 15, 8)  # CET, UTC+1
    assert spec.next_after(utc(2026, 7, 15)) == utc(2026, 7, 15, 7)  # CEST, UTC+2


def test_cron_accepts_day_names() -> None:
    saturday = utc(2026, 1, 3)
    assert cron("0 9 * * MON-FRI").next_after(saturday) == utc(2026, 1, 5, 9)


@pytest.mark.parametrize(("alias", "fields"), [("@hourly", "0 * * * *"), ("@daily", "0 0 * * *")])
def test_cron_accepts_at_aliases(alias: str, fields: str) -> None:
    t = utc(2026, 2, 3, 4, 5)
    assert cron(alias).next_after(t) == cron(fields).next_after(t)


def test_cron_that_never_matches_again_is_due_at_infinity() -> None:
    assert cron("* * */20 * 1L").next_after(utc(2026, 1, 1)) == math.inf


def test_a_malformed_cron_expression_names_it_and_the_bad_field() -> None:
    with pytest.raises(ConfigurationError) as caught:
        cron("61 * * * *")
    message = str(caught.value)
    assert "invalid cron expression '61 * * * *': bad minute" in message
    assert "minute (0-59)" in message


@pytest.mark.parametrize("expression", ["* * * *", "0 * * * * *", "@reboot", ""])
def test_a_cron_expression_without_five_fields_says_to_write_five(expression: str) -> None:
    with pytest.raises(ConfigurationError, match=r"field.*write five fields.*'\*/5 \* \* \* \*'"):
        cron(expression)


def test_an_unknown_time_zone_is_named_with_examples() -> None:
    with pytest.raises(
        ConfigurationError, match=r"unknown time zone 'Mars/Olympus'.*'Europe/Paris'"
    ):
        cron("* * * * *", tz="Mars/Olympus")


def test_a_tzinfo_that_is_not_a_zoneinfo_asks_for_a_zone_name() -> None:
    with pytest.raises(ConfigurationError, match="IANA zone name such as 'UTC'"):
        cron("* * * * *", tz=timezone(timedelta(hours=1)))


def test_a_zoneinfo_is_kept_by_its_key() -> None:
    spec = cron("0 9 * * *", tz=ZoneInfo(PARIS))
    assert spec.tz == PARIS
    assert spec == cron("0 9 * * *", tz=PARIS)


# daylight saving -------------------------------------------------------------------------


@pytest.mark.parametrize(("zone", "jump"), [(PARIS, "03:00+0200"), (NEW_YORK, "03:00-0400")])
def test_a_daily_job_in_the_skipped_spring_hour_fires_once_at_the_jump(
    zone: str, jump: str
) -> None:
    assert fires_on(cron("30 2 * * *", tz=zone), zone, SPRING[zone]) == [jump]


@pytest.mark.parametrize(
    ("zone", "expression", "first_pass"),
    [(PARIS, "30 2 * * *", "02:30+0200"), (NEW_YORK, "30 1 * * *", "01:30-0400")],
)
def test_a_daily_job_in_the_repeated_autumn_hour_fires_once_on_the_first_pass(
    zone: str, expression: str, first_pass: str
) -> None:
    assert fires_on(cron(expression, tz=zone), zone, AUTUMN[zone]) == [first_pass]


@pytest.mark.parametrize("zone", [PARIS, NEW_YORK])
def test_a_daily_job_is_back_at_its_local_time_the_day_after_a_change(zone: str) -> None:
    year, month, day = SPRING[zone]
    assert fires_on(cron("30 2 * * *", tz=zone), zone, (year, month, day + 1))[0][:5] == "02:30"


@pytest.mark.parametrize(
    ("zone", "passes"),
    [(PARIS, ["02:00+0200", "02:00+0100"]), (NEW_YORK, ["01:00-0400", "01:00-0500"])],
)
def test_an_hourly_job_fires_every_real_hour_across_the_autumn_change(
    zone: str, passes: list[str]
) -> None:
    spec = cron("0 * * * *", tz=zone)
    local = fires_on(spec, zone, AUTUMN[zone])
    assert len(local) == 25
    assert [f for f in local if f in passes] == passes  # the repeated hour, on both passes
    assert gaps(spec, zone, AUTUMN[zone]) == {3600.0}


@pytest.mark.parametrize("zone", [PARIS, NEW_YORK])
def test_an_hourly_job_fires_every_real_hour_across_the_spring_change(zone: str) -> None:
    spec = cron("0 * * * *", tz=zone)
    assert len(fires_on(spec, zone, SPRING[zone])) == 23
    assert gaps(spec, zone, SPRING[zone]) == {3600.0}


@pytest.mark.parametrize(
    ("zone", "day", "fires"),
    [
        (PARIS, SPRING[PARIS], 92),
        (PARIS, AUTUMN[PARIS], 100),
        (NEW_YORK, SPRING[NEW_YORK], 92),
        (NEW_YORK, AUTUMN[NEW_YORK], 100),
    ],
)
def test_a_quarter_hourly_job_neither_skips_nor_doubles_across_a_change(
    zone: str, day: tuple[int, int, int], fires: int
) -> None:
    spec = cron("*/15 * * * *", tz=zone)
    local = fires_on(spec, zone, day)
    assert len(local) == len(set(local)) == fires  # each local time and offset once
    assert gaps(spec, zone, day) == {900.0}


def test_next_after_from_the_second_pass_of_a_repeated_hour_does_not_go_back() -> None:
    second_pass = datetime(2026, 10, 25, 2, 10, fold=1, tzinfo=ZoneInfo(PARIS)).timestamp()
    assert cron("15 2 * * *", tz=PARIS).next_after(second_pass) == utc(2026, 10, 26, 1, 15)


@pytest.mark.parametrize("expression", ["15 2 * * *", "*/15 * * * *", "45 1-3 * * *"])
@pytest.mark.parametrize("zone", [PARIS, NEW_YORK])
def test_previous_before_agrees_with_next_after_on_the_autumn_day(
    zone: str, expression: str
) -> None:
    spec = cron(expression, tz=zone)
    start = datetime(*AUTUMN[zone], tzinfo=ZoneInfo(zone)).timestamp()
    for t in (start + step * 450.0 for step in range(200)):
        before = spec.previous_before(t)
        assert before < t <= spec.next_after(before)


# jitter --------------------------------------------------------------------------------


def test_jitter_for_gives_the_same_offset_for_the_same_fire() -> None:
    # A fixed value: scheduler processes of any version and hash seed must agree on it.
    assert jitter_for("report", 1_700_000_000.0, 60.0) == pytest.approx(42.57262212645739)
    assert jitter_for("report", 1_700_000_000, 60) == jitter_for("report", 1_700_000_000.0, 60.0)


def test_jitter_for_stays_within_zero_and_jitter_and_spreads() -> None:
    offsets = [jitter_for("report", 1_700_000_000.0 + 60 * n, 10.0) for n in range(1000)]
    assert all(0.0 <= offset < 10.0 for offset in offsets)
    assert min(offsets) < 0.5
    assert max(offsets) > 9.5


def test_jitter_for_differs_between_tasks() -> None:
    assert jitter_for("a", 1_700_000_000.0, 60.0) != jitter_for("b", 1_700_000_000.0, 60.0)


def test_no_jitter_gives_no_offset() -> None:
    assert jitter_for("report", 1_700_000_000.0, 0.0) == 0.0


def test_jitter_for_rejects_a_negative_jitter() -> None:
    with pytest.raises(ConfigurationError, match="jitter must be"):
        jitter_for("report", 0.0, -1.0)


# due_fires -----------------------------------------------------------------------------


def test_a_fire_due_now_is_fired() -> None:
    assert due_fires(every(60), last=60.0, now=120.5, grace=5, catch_up=0) == ([120.0], 0)


def test_nothing_fires_before_the_next_due_time() -> None:
    assert due_fires(every(60), last=120.0, now=150.0, grace=5, catch_up=0) == ([], 0)


def test_without_catch_up_the_newest_fires_within_grace_and_the_rest_are_skipped() -> None:
    assert due_fires(every(60), last=0.0, now=303.0, grace=5, catch_up=0) == ([300.0], 4)


def test_without_catch_up_a_newest_fire_past_grace_is_skipped_too() -> None:
    assert due_fires(every(60), last=0.0, now=310.0, grace=5, catch_up=0) == ([], 5)


def test_catch_up_fires_the_newest_n_oldest_first_and_skips_the_older() -> None:
    assert due_fires(every(60), last=0.0, now=310.0, grace=5, catch_up=2) == ([240.0, 300.0], 3)


def test_catch_up_beyond_the_missed_fires_fires_them_all() -> None:
    fired, skipped = due_fires(every(60), last=0.0, now=310.0, grace=5, catch_up=10)
    assert (fired, skipped) == ([60.0, 120.0, 180.0, 240.0, 300.0], 0)


@pytest.mark.parametrize("catch_up", [0, 3])
def test_a_spec_never_fired_fires_only_its_newest_due_time_within_grace(catch_up: int) -> None:
    assert due_fires(every(60), last=None, now=303.0, grace=5, catch_up=catch_up) == ([300.0], 0)
    assert due_fires(every(60), last=None, now=310.0, grace=5, catch_up=catch_up) == ([], 0)


def test_a_one_second_schedule_missed_for_a_year_is_counted_without_walking() -> None:
    last = utc(2025, 1, 1)
    started = time.perf_counter()
    fired, skipped = due_fires(every(1), last=last, now=last + YEAR + 0.5, grace=1, catch_up=3)
    assert time.perf_counter() - started < 0.5
    assert fired == [last + YEAR - 2, last + YEAR - 1, last + YEAR]
    assert skipped == YEAR - 3


def test_a_cron_skip_count_stops_at_max_walk() -> None:
    last = utc(2025, 1, 1)
    fired, skipped = due_fires(cron("* * * * *"), last=last, now=last + YEAR, grace=1, catch_up=0)
    assert fired == [last + YEAR]
    assert skipped == MAX_WALK


def test_a_cron_back_from_downtime_fires_the_newest_hour_and_counts_the_rest() -> None:
    fired, skipped = due_fires(
        cron("0 * * * *"), last=utc(2026, 1, 1), now=utc(2026, 1, 1, 5, 0, 30), grace=60, catch_up=0
    )
    assert (fired, skipped) == ([utc(2026, 1, 1, 5)], 4)


@pytest.mark.parametrize("catch_up", [-1, MAX_WALK + 1, True])
def test_catch_up_out_of_range_is_rejected(catch_up: int) -> None:
    with pytest.raises(ConfigurationError, match=f"catch_up must be an int from 0 to {MAX_WALK}"):
        due_fires(every(60), last=None, now=0.0, grace=0, catch_up=catch_up)


def test_a_negative_grace_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="grace must be 0 or more seconds"):
        due_fires(every(60), last=None, now=0.0, grace=-1, catch_up=0)


# describe and JSON ---------------------------------------------------------------------


def test_describe_says_when_the_spec_fires() -> None:
    assert every(30).describe() == "every 30s"
    assert every(minutes=5, jitter=10).describe() == "every 5m, jitter up to 10s"
    assert cron("*/5 * * * *", tz=PARIS).describe() == "cron '*/5 * * * *' Europe/Paris"


def test_to_json_has_the_stored_shape() -> None:
    assert every(30).to_json() == {"kind": "every", "seconds": 30.0, "jitter": 0.0}
    assert cron("0 9 * * *", tz=PARIS).to_json() == {
        "kind": "cron",
        "expression": "0 9 * * *",
        "tz": PARIS,
        "jitter": 0.0,
    }


@pytest.mark.parametrize(
    "spec",
    [every(30), every(minutes=5, jitter=2.5), cron("*/5 * * * *", tz=PARIS), cron("@daily")],
    ids=str,
)
def test_a_spec_round_trips_through_json(spec: ScheduleSpec) -> None:
    again = spec_from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec
    assert type(again) in (Every, Cron)


def test_spec_from_json_rejects_an_unknown_kind() -> None:
    with pytest.raises(ConfigurationError, match="'kind' is 'every' or 'cron'"):
        spec_from_json({"kind": "sometimes"})


def test_spec_from_json_rejects_bad_stored_values() -> None:
    with pytest.raises(ConfigurationError, match=r"bad stored schedule.*finite number of seconds"):
        spec_from_json({"kind": "every", "seconds": -1.0, "jitter": 0.0})
