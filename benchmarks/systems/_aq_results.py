"""aq keeping results but not task states (``result_ttl``,
``track_states=False``): the worker keeps each result in the store, the
producer writes nothing more. The drain only; the baseline of the task
states' own cost (benchmarks/systems/_aq_states.py)."""

from __future__ import annotations

from benchmarks.systems._aq_variant import plain_worker_argv, stored_app

broker, noop, Client = stored_app(track_states=False)
SETTINGS = "Broker(result_ttl=600, track_states=False): each task's result kept in the store"
WORKLOADS = ("drain",)
#: No floor in the issue: the figure is reported, not judged.
TARGET = None
worker_argv = plain_worker_argv
