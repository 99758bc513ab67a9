"""Whether a failed attempt is tried again, and how long it waits: retry policies.

A task's policy is its ``retries`` (a budget; ``None`` without limit), its
``retry_on`` (the exceptions worth another attempt; by default all) and its
``dont_retry_on`` (never retried, whatever ``retry_on`` says), and its backoff
(:class:`aq.options.Backoff`). A task that set no ``retries`` takes its
worker's ``--default-retries``: the producer leaves ``max_attempts`` out of
the message, and the worker fills it in when the message arrives
(:func:`attempts_for`), so a retried message carries the budget it was given.

An :class:`aq.Retry` raised by the task overrides the policy for that attempt:
it is retried whatever ``retry_on`` and ``dont_retry_on`` say, after its own
``delay`` if it gives one, and with ``retries=`` it replaces the budget from
then on. Only a spent budget stops it.
"""

from __future__ import annotations

from aq.errors import KEEP, Retry
from aq.message import TaskMessage
from aq.options import UNLIMITED, TaskConfig

__all__ = ["apply_override", "attempts_for", "judge"]


def attempts_for(default_retries: int | None) -> int:
    """``max_attempts`` of a message whose task set no ``retries``, on a worker
    with ``--default-retries`` (``None``: none given, so no retries)."""
    return 1 if default_retries is None else default_retries + 1


def judge(config: TaskConfig, message: TaskMessage, error: BaseException) -> str | None:
    """``None`` if the attempt of ``message`` that raised ``error`` is tried again;
    otherwise how it failed, for its dead-letter reason (``"failed"`` when its
    budget is spent)."""
    if isinstance(error, Retry):
        limit = _limit(error, message)
        if limit == UNLIMITED or message.attempt < limit:
            return None
        return "failed"
    dont = config.dont_retry_on
    if dont and isinstance(error, dont):
        return f"failed without retry (dont_retry_on names {_matched(error, dont)})"
    retry_on = config.retry_on
    if retry_on is not None and not isinstance(error, retry_on):
        return f"failed without retry (retry_on does not name {type(error).__name__})"
    limit = _budget(message)
    if limit == UNLIMITED or message.attempt < limit:
        return None
    return "failed"


def apply_override(message: TaskMessage, error: BaseException | None) -> None:
    """Before a retry is sent: an ``aq.Retry(retries=...)`` sets ``message``'s budget."""
    if isinstance(error, Retry) and error.retries is not KEEP:
        message.max_attempts = _limit(error, message)


def _limit(error: Retry, message: TaskMessage) -> int:
    """The ``max_attempts`` that applies to an attempt that raised ``error``."""
    retries = error.retries
    if retries is KEEP:
        return _budget(message)
    return UNLIMITED if retries is None else retries + 1


def _budget(message: TaskMessage) -> int:
    """``message``'s ``max_attempts`` (which the worker filled in on arrival, if
    the producer left it out)."""
    return 1 if message.max_attempts is None else message.max_attempts


def _matched(error: BaseException, classes: tuple[type[BaseException], ...]) -> str:
    """The first of ``classes`` that ``error`` is an instance of, by name."""
    return next(cls.__name__ for cls in classes if isinstance(error, cls))
