"""Specification of aq.options and aq.worker.limits: rate limits, the token bucket, backoff."""

from __future__ import annotations

import pytest

import aq
from aq import options
from aq.options import Backoff, RateLimit, parse_rate_limit
from aq.worker import limits
from aq.worker.limits import RateLimiter


class FakeClock:
    """Stands in for the ``time`` module inside aq.worker.limits; time moves only on request."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(limits, "time", fake)
    return fake


class FixedUniform:
    """Stands in for the ``random`` module inside aq.options."""

    def __init__(self, pick: str) -> None:
        self.pick = pick
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return {"low": a, "high": b}[self.pick]


# --- parse_rate_limit -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100/s", RateLimit(100, 1)),
        ("10/m", RateLimit(10, 60)),
        ("5/h", RateLimit(5, 3600)),
        ("3/10s", RateLimit(3, 10)),
        (" 2 / min ", RateLimit(2, 60)),
        ("7/sec", RateLimit(7, 1)),
        ("1/hour", RateLimit(1, 3600)),
        ("1/2m", RateLimit(1, 120)),
        ("2.5/s", RateLimit(2.5, 1)),
        ("10/S", RateLimit(10, 1)),
    ],
    ids=repr,
)
def test_parse_rate_limit_accepts_count_per_unit(text: str, expected: RateLimit) -> None:
    assert parse_rate_limit(text) == expected


def test_rate_limit_per_second_is_count_over_period() -> None:
    assert parse_rate_limit("3/10s").per_second == pytest.approx(0.3)


@pytest.mark.parametrize(
    "text",
    ["", "abc", "10/x", "-1/s", "10", "/s", "10/", "10/ms", "1e3/s", "ten/s"],
    ids=repr,
)
def test_parse_rate_limit_rejects_malformed_text_suggesting_the_form(text: str) -> None:
    with pytest.raises(aq.ConfigurationError, match=r"COUNT/UNIT such as '100/s'"):
        parse_rate_limit(text)


@pytest.mark.parametrize("text", ["0/s", "0.0/m", "1/0s"], ids=repr)
def test_parse_rate_limit_rejects_a_rate_that_is_not_positive(text: str) -> None:
    with pytest.raises(aq.ConfigurationError, match="must be positive"):
        parse_rate_limit(text)


def test_parse_rate_limit_error_quotes_the_bad_text() -> None:
    with pytest.raises(aq.ConfigurationError, match="'10/x'"):
        parse_rate_limit("10/x")


# --- RateLimiter ------------------------------------------------------------------------------


def test_rate_limiter_lets_a_full_burst_through_without_waiting(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimit(5, 1))

    assert [limiter.reserve() for _ in range(5)] == [0.0] * 5


def test_rate_limiter_waits_grow_by_one_interval_past_the_burst(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimit(4, 2))  # 2 per second: one token every 0.5 s
    for _ in range(4):
        limiter.reserve()

    waits = [limiter.reserve() for _ in range(3)]

    assert waits == pytest.approx([0.5, 1.0, 1.5])


def test_rate_limiter_refills_one_token_per_interval(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimit(2, 1))  # one token every 0.5 s
    limiter.reserve()
    limiter.reserve()

    clock.advance(0.5)

    assert limiter.reserve() == 0.0
    assert limiter.reserve() == pytest.approx(0.5)


def test_rate_limiter_refill_is_capped_at_one_burst(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimit(3, 1))
    for _ in range(3):
        limiter.reserve()

    clock.advance(3600)

    assert [limiter.reserve() for _ in range(3)] == [0.0] * 3
    assert limiter.reserve() == pytest.approx(1 / 3)


def test_rate_limiter_does_not_refill_past_capacity_while_idle(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimit(2, 1))

    clock.advance(3600)

    assert [limiter.reserve() for _ in range(2)] == [0.0, 0.0]
    assert limiter.reserve() > 0


def test_rate_limiter_wait_covers_debt_minus_elapsed_time(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimit(1, 1))
    limiter.reserve()
    limiter.reserve()  # waits 1 s: the bucket is now one token in debt

    clock.advance(0.25)

    assert limiter.reserve() == pytest.approx(1.75)


def test_rate_limiter_with_fractional_count_still_allows_one_at_once(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimit(1, 4))  # one every 4 s

    assert limiter.reserve() == 0.0
    assert limiter.reserve() == pytest.approx(4.0)


def test_rate_limiter_below_one_per_period_keeps_a_capacity_of_one(clock: FakeClock) -> None:
    limiter = RateLimiter(parse_rate_limit("0.5/s"))  # one every 2 s

    assert limiter.reserve() == 0.0
    assert limiter.reserve() == pytest.approx(2.0)


async def test_rate_limiter_acquire_returns_at_once_within_the_burst(clock: FakeClock) -> None:
    limiter = RateLimiter(RateLimit(2, 1))

    await limiter.acquire()
    await limiter.acquire()

    assert limiter.reserve() == pytest.approx(0.5)


# --- Backoff ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "maximum", "attempt", "full"),
    [
        (1.0, 600.0, 1, 1.0),
        (1.0, 600.0, 2, 2.0),
        (1.0, 600.0, 3, 4.0),
        (0.5, 600.0, 5, 8.0),
        (1.0, 600.0, 10, 512.0),
        (1.0, 600.0, 11, 600.0),
        (2.0, 10.0, 4, 10.0),
        (1.0, 600.0, 0, 1.0),
    ],
    ids=repr,
)
def test_backoff_jitter_spans_half_to_all_of_the_full_delay(
    monkeypatch: pytest.MonkeyPatch, base: float, maximum: float, attempt: int, full: float
) -> None:
    backoff = Backoff(base, maximum)

    monkeypatch.setattr(options, "random", FixedUniform("low"))
    lowest = backoff.delay(attempt)
    monkeypatch.setattr(options, "random", FixedUniform("high"))
    highest = backoff.delay(attempt)

    assert (lowest, highest) == pytest.approx((full / 2, full))


@pytest.mark.parametrize("attempt", range(1, 16))
def test_backoff_delay_lies_within_half_and_all_of_the_full_delay(attempt: int) -> None:
    backoff = Backoff(base=1.0, maximum=600.0)
    full = min(600.0, 2.0 ** (attempt - 1))

    delays = [backoff.delay(attempt) for _ in range(50)]

    assert all(full / 2 <= d <= full for d in delays)


def test_backoff_delay_is_capped_by_maximum() -> None:
    backoff = Backoff(base=1.0, maximum=30.0)

    delays = [backoff.delay(attempt) for attempt in range(1, 64) for _ in range(5)]

    assert max(delays) <= 30.0


def test_backoff_defaults_to_one_second_base_and_ten_minute_cap() -> None:
    assert Backoff() == Backoff(base=1.0, maximum=600.0)


def test_backoff_delay_is_capped_for_a_very_large_attempt() -> None:
    assert Backoff(base=1.0, maximum=600.0).delay(5000) <= 600.0
