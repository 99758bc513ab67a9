"""Blaming a crash on the task that caused it, and on no other.

When a worker process dies (a task called ``os._exit``, the OOM killer struck,
someone sent SIGKILL), the broker hands every message the process held to
another worker, each with its delivery count raised. Counting those deliveries
alone would dead-letter the good tasks beside the one that killed the process.
So a :class:`CrashPolicy` judges each delivery before it runs:

* A message whose workers died ``threshold`` times while holding it (2, or 1
  when ``max_deliveries`` is 2) is not run again among others: it is moved to
  its queue's isolation queue (``isolate``). The first such death may have been
  anyone's fault (a connection that dropped, a neighbour that crashed), so it
  runs once more normally before it is isolated.
* An isolation worker runs those messages one at a time and nothing else, so a
  death there is the running message's own doing. A message that has died
  there, and whose deaths reach ``max_deliveries`` counting the ``threshold``
  before it was isolated, is dead-lettered with a reason that says so; it never
  runs more than ``max_deliveries`` times.
* A good task never dies in isolation, so it is never dead-lettered for another
  task's crash; it may run more than once.

These bounds hold for each copy of a message. At-least-once delivery can make a
second copy (a publish whose confirm was lost with its connection, and sent
again), which then has a count of its own.

A worker without an isolation worker behind it (``aq.Worker`` in a program of
your own, or the memory broker) judges ``inline``: a message is dead-lettered
once it has been delivered ``max_deliveries`` times without being settled,
crashes beside it included, as a bound against crash loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aq.errors import ConfigurationError
from aq.worker.options import CrashMode

__all__ = ["CrashMode", "CrashPolicy", "Verdict"]

#: ``inline``: no isolation; ``isolate``: move suspects to isolation;
#: ``isolated``: this worker runs the isolation queues.
Verdict = Literal["run", "isolate", "dead"]


@dataclass(frozen=True, slots=True)
class CrashPolicy:
    """What to do with a delivery, by how often its workers died holding it."""

    mode: CrashMode
    max_deliveries: int

    def __post_init__(self) -> None:
        if self.max_deliveries < 2 and self.mode != "inline":
            raise ConfigurationError(
                f"max_deliveries must be at least 2, not {self.max_deliveries}: a crash is "
                "blamed on a task only once it has crashed a worker while running alone"
            )

    @property
    def threshold(self) -> int:
        """Deaths of its workers after which a message runs only in isolation."""
        return min(2, self.max_deliveries - 1)

    def judge(self, delivery_count: int) -> tuple[Verdict, str]:
        """The verdict on a delivery, and the dead-letter reason when it is ``dead``."""
        deaths = delivery_count - 1
        if deaths <= 0:
            return "run", ""
        if self.mode == "isolate":
            return ("isolate", "") if deaths >= self.threshold else ("run", "")
        if self.mode == "isolated":
            total = self.threshold + deaths
            if total >= self.max_deliveries:
                return "dead", (
                    f"crashed its worker process {total} times, the last {deaths} while "
                    "running alone: this task is the cause"
                )
            return "run", ""
        if delivery_count > self.max_deliveries:
            return "dead", (
                f"delivered {delivery_count} times without being settled (its workers keep dying)"
            )
        return "run", ""
