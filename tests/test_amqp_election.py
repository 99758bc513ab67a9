"""RabbitMQ's own leader election (a single-active-consumer queue and a token):
one leader, a leader that keeps its place past RabbitMQ's consumer_timeout by
swapping its token, and one that steps down at once when RabbitMQ cancels its
consumer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import aq
from aq.transport.amqp import election as election_module
from aq.transport.amqp.election import QueueElection
from tests.conftest import AMQP_URL, delete_amqp_namespace

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def broker() -> AsyncIterator[aq.Broker]:
    url = f"{AMQP_URL}?prefix=aqelect-{uuid.uuid4().hex[:12]}"
    b = aq.Broker(url)
    async with b:
        yield b
    await delete_amqp_namespace(url, [])


def _election(broker: aq.Broker) -> QueueElection:
    election = broker.transport.election("scheduler")
    assert isinstance(election, QueueElection)
    return election


async def _tokens(broker: aq.Broker, queue: str) -> int:
    context: Any = broker.transport.context  # type: ignore[attr-defined]
    async with context.raw_channel() as channel:
        declared = await channel.queue_declare(queue, passive=True)
        return int(declared.message_count)


async def test_one_of_two_campaigners_leads(broker: aq.Broker) -> None:
    first, second = _election(broker), _election(broker)
    try:
        await asyncio.wait_for(first.campaign(), 10)
        second_campaign = asyncio.create_task(second.campaign())
        await asyncio.sleep(0.3)  # had it been given a token, it would lead by now
        assert first.leading
        assert not second.leading
        await first.resign()
        await asyncio.wait_for(second_campaign, 10)  # the token passes on at once
        assert second.leading
    finally:
        await first.resign()
        await second.resign()


async def test_a_leader_swaps_its_token_and_keeps_its_place(
    broker: aq.Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(election_module, "_ROTATE_EVERY", 0.05)
    monkeypatch.setattr(election_module, "_LOOK_INTERVAL", 0.05)
    leader = _election(broker)
    try:
        await asyncio.wait_for(leader.campaign(), 10)
        first = leader._held
        lost = asyncio.create_task(leader.wait_lost())
        await asyncio.sleep(0.5)  # about ten swaps
        assert not lost.done()
        assert leader.leading
        assert leader._held != first  # it holds a fresh token now
        assert await _tokens(broker, leader.queue) <= 1  # the old ones were acked
        lost.cancel()
    finally:
        await leader.resign()


async def test_a_leader_whose_consumer_rabbitmq_cancels_steps_down_at_once(
    broker: aq.Broker,
) -> None:
    first, second = _election(broker), _election(broker)
    try:
        await asyncio.wait_for(first.campaign(), 10)
        second_campaign = asyncio.create_task(second.campaign())
        context: Any = broker.transport.context  # type: ignore[attr-defined]
        async with context.raw_channel() as channel:
            await channel.queue_delete(first.queue)  # RabbitMQ cancels both consumers
        await asyncio.wait_for(first.wait_lost(), 5)
        # Both declare the queue again and campaign: one leads, never both.
        first_campaign = asyncio.create_task(first.campaign())
        await asyncio.wait(
            [first_campaign, second_campaign], timeout=10, return_when=asyncio.FIRST_COMPLETED
        )
        assert first.leading != second.leading
        for campaign in (first_campaign, second_campaign):
            campaign.cancel()
    finally:
        await first.resign()
        await second.resign()
