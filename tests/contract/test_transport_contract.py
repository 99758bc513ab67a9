"""aq's own transports pass the transport contract offered to third-party backends."""

from __future__ import annotations

import pytest

import aq
from aq.testing.contract import TransportContract
from aq.transport import Transport


class TestTransportContract(TransportContract):
    @pytest.fixture
    def transport(self, broker: aq.Broker) -> Transport:
        """The started transport of the ``broker`` fixture, over every transport."""
        return broker.transport
