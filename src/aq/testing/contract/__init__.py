"""aq's contract suite, for the authors of transports and stores of their own.

The tests aq runs against its memory, Redis and RabbitMQ backends, as base
classes of pytest tests, at three levels:

* :class:`TransportContract`: bytes through a :class:`~aq.transport.Transport`
  and its :class:`~aq.transport.Admin` (delivery counts, acks, requeues, dead
  letters, isolation, priorities, due times, prefetch, replies, broadcasts);
* :class:`StoreContract`: a :class:`~aq.transport.Store` (values with expiry,
  set-if-absent, membership counts, leases with fencing tokens);
* :class:`TaskContract`: tasks sent through an :class:`aq.Broker` on your
  transport and run by a worker in the test's event loop.

Subclass each under a name pytest collects (``Test...``) and give it the one
fixture it needs, yielding a connected object on a fresh namespace::

    import uuid

    import pytest_asyncio

    import aq
    from aq.testing.contract import StoreContract, TaskContract, TransportContract
    from mypackage import MyStore, MyTransport

    def fresh_url() -> str:
        return f"mine://127.0.0.1/?prefix=test-{uuid.uuid4().hex}"

    class TestMyTransport(TransportContract):
        @pytest_asyncio.fixture
        async def transport(self):
            async with MyTransport(fresh_url()) as transport:
                yield transport

    class TestMyStore(StoreContract):
        @pytest_asyncio.fixture
        async def store(self):
            async with MyStore(fresh_url()) as store:
                yield store

    class TestMyTasks(TaskContract):
        @pytest_asyncio.fixture
        async def broker(self):
            async with aq.Broker(transport=MyTransport(fresh_url())) as broker:
                yield broker

The tests need pytest-asyncio (they carry its ``asyncio`` mark, so its strict
mode works too). Class attributes tune them for a slow or particular backend:
``timeout`` (seconds any one wait may take), ``queue`` and ``other_queue``
(the queue names :class:`TransportContract` uses), ``short_ttl``
(:class:`StoreContract`'s expiry tests). A transport that refuses priorities
with :class:`aq.ConfigurationError` has its priority test skipped.
"""

import pytest

# Plain asserts in these modules get pytest's detailed failure messages.
pytest.register_assert_rewrite(
    "aq.testing.contract.store", "aq.testing.contract.tasks", "aq.testing.contract.transport"
)

from aq.testing.contract.store import StoreContract  # noqa: E402
from aq.testing.contract.tasks import TaskContract  # noqa: E402
from aq.testing.contract.transport import TransportContract  # noqa: E402

__all__ = ["StoreContract", "TaskContract", "TransportContract"]
