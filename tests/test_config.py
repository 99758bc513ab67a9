"""Bad input fails early, with a message that says what to change."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import aq
from aq.testing import running_worker
from aq.transport.redis.connection import make_client


def test_the_broker_url_comes_from_the_environment_when_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AQ_BROKER_URL", "memory://from-env")
    assert aq.Broker("memory://from-code").url == "memory://from-env"
    assert aq.Broker().url == "memory://from-env"


def test_a_missing_url_says_how_to_give_one() -> None:
    with pytest.raises(aq.ConfigurationError, match="AQ_BROKER_URL"):
        aq.Broker()


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("localhost:6379", "expected SCHEME://"),
        ("kafka://localhost", "unknown broker URL scheme 'kafka'"),
        ("amqp://localhost/?queue_type=stream", "invalid queue_type='stream'"),
        ("amqp://localhost/?publish_timeout=0", "invalid publish_timeout='0'.*must be positive"),
        ("amqp://localhost/?prefix=a*b", "invalid prefix='a\\*b'"),
        ("amqp:///vhost", "names no host"),
        ("redis://localhost/0?visibility_timeout=soon", "invalid visibility_timeout='soon'"),
        ("redis://localhost/0?max_deliveries=0", "invalid max_deliveries='0'.* at least 2"),
        ("redis://localhost/0?max_deliveries=1", "invalid max_deliveries='1'.* at least 2"),
        ("amqp://localhost/?max_deliveries=1", "invalid max_deliveries='1'.* at least 2"),
        ("amqp://localhost/?consumer_timeout=0", "invalid consumer_timeout='0'.*must be positive"),
        ("amqp://localhost/?heartbeat=2.5", "invalid heartbeat='2.5'.*whole seconds"),
        ("amqp://localhost/?heartbeat=70000", "invalid heartbeat='70000'"),
        ("redis://localhost/0?socket_timeout=1", "socket_timeout='1' .* too short"),
        ("redis://localhost/0?socket_timeout=soon", "invalid socket_timeout='soon'"),
        ("redis://localhost/0?cafile=/ca.pem", "cafile in the broker URL applies to rediss://"),
        ("redis+sentinel://h:26379/m?certfile=/c&keyfile=/k", "redis\\+sentinel:// without TLS"),
        ("redis+cluster://h:7000?no_verify_ssl=1", "redis\\+cluster:// without TLS"),
        ("rediss://localhost/0?no_verify_ssl=yes", "invalid no_verify_ssl='yes'"),
        ("rediss://localhost/0?no_verify_ssl=2", "no_verify_ssl='2' .* use 1"),
        ("rediss://localhost/0?cafile=", "invalid cafile='' .* give a path"),
    ],
)
def test_a_bad_url_fails_at_construction(url: str, hint: str) -> None:
    with pytest.raises(aq.ConfigurationError, match=hint):
        aq.Broker(url)


@pytest.mark.parametrize(
    "url",
    [
        "kafka://app:s3cret@localhost/",
        "amqp://app:s3cret@/vhost",
        "redis://:s3cret@localhost/0?max_deliveries=1",
        "redis://:s3cret@[::1/0",
    ],
)
def test_a_bad_url_is_named_without_its_password(url: str) -> None:
    with pytest.raises(aq.ConfigurationError) as caught:
        aq.Broker(url)
    assert "s3cret" not in str(caught.value)


def test_a_broker_shows_its_url_without_the_password() -> None:
    broker = aq.Broker("redis://app:s3cret@localhost/0")
    assert repr(broker) == "<Broker redis://app:***@localhost/0 tasks=0>"
    assert broker.url == "redis://app:s3cret@localhost/0"  # what connects keeps it


def test_rabbitmq_heartbeats_every_5_s_unless_the_url_says_otherwise() -> None:
    def heartbeats(url: str) -> list[str]:
        transport: Any = aq.Broker(url).transport
        return parse_qs(urlsplit(transport.context.client_url).query).get("heartbeat", [])

    assert heartbeats("amqp://localhost/") == ["5"]
    assert heartbeats("amqp://localhost/?heartbeat=30&prefix=x") == ["30"]
    assert heartbeats("amqp://localhost/?heartbeat=0") == ["0"]  # off, if one insists


async def test_redis_connections_time_out_after_5_s_unless_the_url_says_otherwise() -> None:
    for url, seconds in [
        ("redis://localhost/0", 5.0),
        ("redis://localhost/0?socket_timeout=12", 12),
    ]:
        transport: Any = aq.Broker(url).transport
        client, _ = make_client(transport.context.client_url, transport.settings)
        try:
            assert client.connection_pool.connection_kwargs["socket_timeout"] == seconds
            assert client.connection_pool.connection_kwargs["socket_keepalive"] is True
        finally:
            await client.aclose()


def test_queue_type_applies_to_rabbitmq_only() -> None:
    with pytest.raises(aq.ConfigurationError, match="queue_type option does not apply to redis"):
        aq.Broker("redis://localhost/0", queue_type="quorum")
    assert aq.Broker("amqp://localhost/", queue_type="quorum").transport.settings.queue_type == (  # type: ignore[attr-defined]
        "quorum"
    )


def test_result_ttl_on_rabbitmq_asks_for_a_store() -> None:
    with pytest.raises(aq.ConfigurationError, match=r"result_ttl needs a store.*store='redis"):
        aq.Broker("amqp://localhost/", result_ttl=60)
    with pytest.raises(aq.ConfigurationError, match="unknown store URL scheme 'amqp'"):
        aq.Broker("memory://", store="amqp://localhost/")


def test_result_backend_is_still_accepted_as_the_store() -> None:
    broker = aq.Broker("amqp://localhost/", result_ttl=60, result_backend="redis://localhost/0")
    assert broker.store is not None
    assert broker.store is not aq.Broker("amqp://localhost/").store


@pytest.mark.parametrize(
    ("settings", "hint"),
    [
        ({"retries": -1}, "retries must be a non-negative int"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"rate_limit": "fast"}, "invalid rate limit 'fast'"),
        ({"max_concurrency": 0}, "max_concurrency must be a positive int"),
        ({"priority": 10}, "priority must be an int from 0 to 9"),
        ({"retry_backoff": -1}, "retry_backoff must be a positive number"),
    ],
)
def test_bad_task_options_fail_at_decoration(settings: dict[str, object], hint: str) -> None:
    broker = aq.Broker("memory://")

    async def job() -> None:
        return None

    with pytest.raises(aq.ConfigurationError, match=hint):
        broker.register(job, **settings)  # type: ignore[arg-type]


def test_two_tasks_with_one_name_are_refused() -> None:
    broker = aq.Broker("memory://")

    @broker.task(name="job")
    async def first() -> None:
        return None

    with pytest.raises(aq.ConfigurationError, match="already registered"):

        @broker.task(name="job")
        async def second() -> None:
            return None


@pytest.mark.parametrize(
    ("options", "hint"),
    [
        ({"delay": -1}, "delay must be a non-negative number"),
        ({"priority": 42}, "priority must be an int from 0 to 9"),
        ({"delay": 1, "eta": datetime(2030, 1, 1).astimezone()}, "delay or eta, not both"),
        ({"eta": datetime(2030, 1, 1)}, "naive datetimes are ambiguous"),
        ({"timeout": -5}, "timeout must be a positive number"),
        ({"task_id": ""}, "task_id must be a non-empty string"),
    ],
)
def test_bad_call_options_fail_at_options(options: dict[str, object], hint: str) -> None:
    broker = aq.Broker("memory://")

    @broker.task
    async def job() -> None:
        return None

    with pytest.raises(aq.ConfigurationError, match=hint):
        job.options(**options)  # type: ignore[arg-type]


def test_worker_options_are_checked_at_construction() -> None:
    broker = aq.Broker("memory://")
    with pytest.raises(aq.ConfigurationError, match="concurrency must be a positive int"):
        aq.Worker(broker, concurrency=0)


async def test_a_non_serialisable_argument_fails_at_kiq_naming_it(broker: aq.Broker) -> None:
    @broker.task
    async def store(key: str, value: object) -> None:
        return None

    with pytest.raises(aq.SerializationError, match=r"argument 'value' of task .*store"):
        await store.kiq("k", object())
    with pytest.raises(aq.SerializationError, match="argument 'value'"):
        await store.kiq("k", value={1: {2, lambda: 3}})
    assert (await broker.admin.stats("default")).ready == 0


async def test_a_message_over_the_size_limit_fails_at_kiq() -> None:
    broker = aq.Broker("memory://", max_message_size=1000)

    @broker.task
    async def store(blob: str) -> None:
        return None

    async with broker:
        with pytest.raises(aq.SerializationError, match="over the limit of 1000"):
            await store.kiq("x" * 2000)
        async with running_worker(broker):
            await (await store.kiq("x" * 10)).result(timeout=5)


async def test_a_non_serialisable_header_fails_at_kiq_naming_it(broker: aq.Broker) -> None:
    @broker.task
    async def job() -> None:
        return None

    with pytest.raises(aq.SerializationError, match="header trace of task"):
        await job.options(headers={"trace": object()}).kiq()


def test_the_rabbitmq_consumer_timeout_is_rabbitmqs_default_unless_the_url_declares_it() -> None:
    assert aq.Broker("amqp://localhost/").transport.max_hold == 1800
    assert aq.Broker("amqp://localhost/?consumer_timeout=7200").transport.max_hold == 7200
    assert aq.Broker("redis://localhost/0").transport.max_hold is None


def test_worker_children_get_every_option_and_the_isolation_worker_no_scheduler() -> None:
    from aq.worker.launch import Launch
    from aq.worker.options import WorkerOptions

    options = WorkerOptions(concurrency=5, lease_time=3.0, scheduler=True)
    launch = Launch("app:broker", "INFO", "auto", options)
    child = launch.child_args("isolate")
    assert child[child.index("--lease-time") + 1] == "3.0"
    assert "--scheduler" in child
    assert child[child.index("--concurrency") + 1] == "5"
    assert "--scheduler" not in launch.child_args("isolated")
