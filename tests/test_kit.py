"""Specification of the transport kit: retrying, delays, loop turns, URL options."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Iterator

import pytest

import aq
from aq.transport.kit import (
    CommonSettings,
    LoopTurn,
    ReconnectDelay,
    complete,
    read_options,
    redact_url,
    retry_until,
    url_title,
)
from aq.transport.kit.options import option

log = logging.getLogger("test.kit")


@contextlib.contextmanager
def _lost(what: str) -> Iterator[None]:
    try:
        yield
    except ConnectionError as exc:
        raise aq.ConnectionLost(f"{what}: {exc}") from exc


def test_reconnect_delays_double_up_to_the_ceiling_and_start_again_after_a_success() -> None:
    delays = ReconnectDelay(0.1, 0.5)
    assert [delays.next() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    delays.reset()
    assert delays.next() == 0.1


async def test_retry_until_rides_out_lost_connections() -> None:
    attempts: list[float] = []

    async def flaky(left: float) -> str:
        attempts.append(left)
        if len(attempts) < 3:
            raise ConnectionError("reset by peer")
        return "done"

    result = await retry_until("publish", flaky, 5, translate=_lost, server="X", log=log)
    assert result == "done"
    assert len(attempts) == 3
    assert all(0 < left <= 5 for left in attempts)


async def test_retry_until_gives_up_at_the_deadline_naming_the_server_and_cause() -> None:
    async def down(left: float) -> None:
        raise ConnectionError("refused")

    with pytest.raises(aq.BrokerUnavailable, match=r"publish: X unreachable for 0.2 s .*refused"):
        await retry_until("publish", down, 0.2, translate=_lost, server="X", log=log)


async def test_retry_until_does_not_retry_a_refusal() -> None:
    calls = 0

    async def refused(left: float) -> None:
        nonlocal calls
        calls += 1
        raise aq.BrokerError("no such queue")

    with pytest.raises(aq.BrokerError, match="no such queue"):
        await retry_until("publish", refused, 5, translate=_lost, server="X", log=log)
    assert calls == 1


async def test_a_loop_turn_flushes_once_on_the_next_turn_however_often_it_is_asked() -> None:
    flushed: list[int] = []
    turn = LoopTurn(lambda: flushed.append(len(flushed)))
    for _ in range(3):
        turn.request()
    assert flushed == []
    assert turn.requested
    await asyncio.sleep(0)
    assert flushed == [0]
    assert not turn.busy


async def test_a_loop_turn_drains_what_it_started() -> None:
    done = asyncio.Event()

    async def send() -> None:
        await asyncio.sleep(0)
        done.set()

    turn = LoopTurn(lambda: None)
    turn.start(send())
    assert turn.busy
    await turn.drain()
    assert done.is_set()
    assert not turn.busy


async def test_complete_hands_each_caller_its_share_or_the_batch_error() -> None:
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(3)]

    async def send() -> list[object]:
        return [1, ValueError("only mine"), 3]

    assert await complete(futures, send()) is None
    assert futures[0].result() == 1
    with pytest.raises(ValueError, match="only mine"):
        futures[1].result()
    assert futures[2].result() == 3

    failed = [loop.create_future() for _ in range(2)]

    async def broken() -> None:
        raise aq.ConnectionLost("gone")

    error = await complete(failed, broken())
    assert isinstance(error, aq.ConnectionLost)
    assert all(isinstance(f.exception(), aq.ConnectionLost) for f in failed)


@dataclasses.dataclass(frozen=True, slots=True)
class _Settings(CommonSettings):
    batch: int = option(10)


def test_url_options_are_taken_out_converted_and_checked_once() -> None:
    url, settings = read_options("x://host/0?prefix=app&batch=5&client_opt=1", _Settings)
    assert url == "x://host/0?client_opt=1"
    assert (settings.prefix, settings.batch, settings.publish_timeout) == ("app", 5, 10.0)
    _, given = read_options("x://host/0?batch=5", _Settings, {"batch": 7})
    assert given.batch == 7  # options given in code win over the URL


@pytest.mark.parametrize(
    ("url", "given", "problem"),
    [
        ("x://h/?batch=0", None, "invalid batch='0' in the broker URL: it must be positive"),
        ("x://h/?batch=many", None, "invalid batch='many' in the broker URL"),
        ("x://h/?reply_ttl=-1", None, "invalid reply_ttl='-1'.*positive"),
        ("x://h/?max_deliveries=1", None, "invalid max_deliveries='1'.*at least 2"),
        ("x://h/?prefix=a*", None, "invalid prefix='a\\*'"),
        ("x://h/", {"queue_type": "quorum"}, "the queue_type option does not apply to x://"),
    ],
)
def test_a_bad_url_option_names_the_option_and_what_it_accepts(
    url: str, given: dict[str, str] | None, problem: str
) -> None:
    with pytest.raises(aq.ConfigurationError, match=problem):
        read_options(url, _Settings, given)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@h:6379/0?prefix=x", "redis://:***@h:6379/0?prefix=x"),
        ("amqps://app:s3cret@h/shop?cafile=/ca.pem", "amqps://app:***@h/shop?cafile=/ca.pem"),
        ("redis://:p@ss@h/0", "redis://:***@h/0"),  # an "@" the user forgot to escape
        ("redis+sentinel://:s%40cret@h1:1,h2:2/m/0", "redis+sentinel://:***@h1:1,h2:2/m/0"),
        (
            "rediss://h/0?password=s3cret&ssl_password=k3y&db=1",
            "rediss://h/0?password=***&ssl_password=***&db=1",
        ),
        ("memory://?password=s3cret", "memory://?password=***"),
        ("redis://:s3cret@[::1/0", "redis://***"),  # too malformed to split
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url", ["memory://", "redis://127.0.0.1:6379/0", "amqp://guest@h/", "amqp://u:@h/", "x:y"]
)
def test_a_url_without_a_password_is_shown_as_given(url: str) -> None:
    assert redact_url(url) == url


@pytest.mark.parametrize(
    ("url", "title"),
    [
        ("memory://", "memory://"),
        ("memory://board", "memory://board"),
        ("redis://app:s3cret@h:6379/0?prefix=x&password=p", "redis://h:6379/0"),
        (
            "redis+sentinel://:s3cret@h1:26379,h2:26379/m/0",
            "redis+sentinel://h1:26379,h2:26379/m/0",
        ),
        ("amqps://app:s3cret@mq/shop?cafile=/ca.pem", "amqps://mq/shop"),
    ],
)
def test_a_url_as_a_title_names_the_broker_and_nothing_secret(url: str, title: str) -> None:
    assert url_title(url) == title
