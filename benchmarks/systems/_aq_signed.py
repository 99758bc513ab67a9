"""aq with every message signed (``Broker(signing_keys=...)``): what an
HMAC-SHA256 on each task message and each reply, checked by the worker and
by the producer, costs in the drain and the round trip."""

from __future__ import annotations

import os

import aq
from benchmarks.systems import _mark
from benchmarks.systems._aq_variant import noop_client, plain_worker_argv

#: A key for benchmarks only: never a real secret.
KEY = "benchmark-key-of-at-least-thirty-two-bytes"

broker = aq.Broker(os.environ.get("AQBENCH_URL", "memory://"), signing_keys={"bench": KEY})


@broker.task(name="bench.noop")
async def noop() -> None:
    _mark.done("noop")


Client = noop_client(broker, noop)
SETTINGS = "Broker(signing_keys={'bench': key}): every task message and reply signed and checked"
WORKLOADS = ("drain", "round_trip")
#: The issue's floor: drain with signing at least this share of plain aq's.
TARGET = 0.9
worker_argv = plain_worker_argv
__all__ = ["SETTINGS", "TARGET", "WORKLOADS", "Client", "broker", "worker_argv"]
