"""`aq queues`, `aq purge` and `aq dlq` against a real Redis and a real RabbitMQ."""

from __future__ import annotations

import asyncio
import base64
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

import aq
from aq import admin
from aq.cli import app
from tests.apps import compact
from tests.apps.codec import BackwardsJSON
from tests.conftest import AMQP_URL, REDIS_URL, _delete_prefix

APP = "tests.apps.basic:broker"


@pytest.fixture(params=["redis", "amqp"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    prefix = f"prefix=aqcli-{uuid.uuid4().hex[:12]}"
    if request.param == "redis":
        broker_url = f"{REDIS_URL}?{prefix}"
        yield broker_url
        asyncio.run(_delete_prefix(broker_url))
    else:
        broker_url = f"{AMQP_URL}?{prefix}"
        yield broker_url
        asyncio.run(_delete_amqp(broker_url, ["default", "mail"]))


async def _delete_amqp(url: str, queues: list[str]) -> None:
    transport: Any = aq.Broker(url).transport
    async with transport:
        transport.declarer.declared.update(queues)
        await transport.delete_namespace()


def aq_command(url: str, *args: str) -> str:
    # Each command is its own process in real use: import the app afresh, with this URL.
    for module in ("tests.apps.basic", "tests.apps.codec", "tests.apps.compact"):
        sys.modules.pop(module, None)
    result = CliRunner().invoke(app, list(args), env={"AQ_BROKER_URL": url, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def _prepare(url: str, ready: int, dead: int) -> None:
    async def run() -> None:
        broker = aq.Broker(url)
        async with broker:
            for i in range(ready):
                await broker.transport.publish("default", orjson.dumps({"n": i}))
            for _ in range(dead):
                await broker.transport.publish("mail", b"not json at all")
            worker = aq.Worker(broker, queues=["mail"])
            async with worker:
                await worker.wait_idle()

    asyncio.run(run())


def test_queues_shows_counts_per_queue(url: str) -> None:
    _prepare(url, ready=3, dead=2)
    output = aq_command(url, "queues", APP, "--queue", "mail")
    rows = {line.split()[0]: line.split()[1:] for line in output.splitlines()[1:]}
    assert output.split()[:7] == [
        "queue",
        "ready",
        "delayed",
        "unacked",
        "isolated",
        "dead",
        "consumers",
    ]
    assert rows["default"][:5] == ["3", "0", "0", "0", "0"]
    assert rows["mail"][:5] == ["0", "0", "0", "0", "2"]


def test_dlq_list_shows_each_dead_letter_with_its_reason(url: str) -> None:
    _prepare(url, ready=0, dead=2)
    output = aq_command(url, "dlq", "list", APP, "--queue", "mail")
    lines = output.splitlines()
    assert lines[-1] == "2 dead letter(s) in mail"
    assert all("(undecodable)  undecodable message: not valid JSON" in line for line in lines[:2])


def test_dlq_list_reads_bodies_of_the_brokers_own_serializer_and_of_json(url: str) -> None:
    async def run() -> None:
        broker = aq.Broker(url, serializer=BackwardsJSON())

        @broker.task(name="codec.refuse")  # as tests/apps/codec.py
        async def refuse() -> None:
            raise ValueError("refused")

        async with broker:
            await refuse.kiq()
            await broker.transport.publish("default", orjson.dumps({"task": "plain.json"}))
            worker = aq.Worker(broker, queues=["default"])
            async with worker:
                await worker.wait_idle()

    asyncio.run(run())
    output = aq_command(url, "dlq", "list", "tests.apps.codec:broker")
    letters = dict(line.split("  ")[2:] for line in output.splitlines()[:-1])
    assert letters.keys() == {"codec.refuse", "plain.json"}
    assert letters["codec.refuse"] == "failed after 1 attempt(s): ValueError: refused"
    assert letters["plain.json"] == (
        "undecodable message: unsupported protocol version None (this aq speaks 1 and 2)"
    )


def test_dlq_list_show_prints_how_a_letter_came_and_its_message_as_json(url: str) -> None:
    async def run() -> None:
        broker = compact.make_broker(url)
        store_blob = broker.task(name="compact.store_blob")(compact.store_blob.fn)
        async with broker:
            await store_blob.kiq(b"\x00\x01" * 1000)  # msgpack bytes, compressed
            worker = aq.Worker(broker, queues=["default"])
            async with worker:
                await worker.wait_idle()

    asyncio.run(run())
    output = aq_command(url, "dlq", "list", "tests.apps.compact:broker", "--show")
    lines = output.splitlines()
    assert lines[0].split("  ")[2:] == [
        "compact.store_blob",
        "failed after 1 attempt(s): ValueError: refused 2000 bytes",
    ]
    assert lines[1].endswith(" bytes: msgpack, zstd, signed by key 2026-12 (verified)")
    shown = orjson.loads("\n".join(lines[2:-1]))
    assert shown["task"] == "compact.store_blob"
    assert shown["args"] == [base64.b64encode(b"\x00\x01" * 1000).decode()]
    assert lines[-1] == "1 dead letter(s) in default"


def test_dlq_requeue_sends_dead_letters_back(url: str) -> None:
    _prepare(url, ready=0, dead=2)
    listed = aq_command(url, "dlq", "list", APP, "--queue", "mail").splitlines()
    first_id = listed[0].split()[0]
    assert "requeued 1 dead letter(s)" in aq_command(
        url, "dlq", "requeue", APP, "--queue", "mail", "--id", first_id
    )
    assert "requeued 1 dead letter(s)" in aq_command(
        url, "dlq", "requeue", APP, "--queue", "mail", "--yes"
    )
    rows = aq_command(url, "queues", APP, "--queue", "mail").splitlines()
    mail = next(line.split() for line in rows if line.startswith("mail"))
    assert mail[1:6] == ["2", "0", "0", "0", "0"]


def test_dlq_purge_and_purge_empty_what_they_name(url: str) -> None:
    _prepare(url, ready=4, dead=1)
    assert "purged 1 dead letter(s) from mail" in aq_command(
        url, "dlq", "purge", APP, "--queue", "mail", "--yes"
    )
    assert "purged 4 message(s) from default" in aq_command(url, "purge", APP, "--yes")
    rows = aq_command(url, "queues", APP, "--queue", "mail").splitlines()
    assert all(line.split()[1:6] == ["0", "0", "0", "0", "0"] for line in rows[1:])


def test_destructive_commands_ask_first(url: str) -> None:
    _prepare(url, ready=1, dead=0)
    sys.modules.pop("tests.apps.basic", None)
    result = CliRunner().invoke(app, ["purge", APP], input="n\n", env={"AQ_BROKER_URL": url})
    assert result.exit_code == 1
    assert "Delete every waiting message of queue 'default'?" in result.output


def test_a_message_json_cannot_hold_is_shown_as_python_would_print_it() -> None:
    assert admin.shown({1: b"\x00"}) == '{\n  "1": "AA=="\n}'
    deep: list[object] = []
    for _ in range(300):
        deep = [deep]
    assert admin.shown(deep).startswith("[[[")
