"""Structured log lines: ``event key=value ...`` on the standard logging module.

The worker logs one line per task event (received, succeeded, retried, failed,
cancelled, expired, unknown, undecodable) with the task id, name and duration,
so the lines can be grepped by eye and parsed by machines. Values are formatted
only when the level is enabled, which keeps logging off the hot path when quiet.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["KeyValueFormatter", "configure", "event"]


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def event(
    logger: logging.Logger,
    level: int,
    what: str,
    /,
    *,
    exc_info: BaseException | None = None,
    **fields: Any,
) -> None:
    """Log ``what`` with ``fields`` as one ``key=value`` line, if ``level`` is enabled;
    with ``exc_info``, that exception's traceback follows the line."""
    if logger.isEnabledFor(level):
        text = " ".join(f"{k}={_format_value(v)}" for k, v in fields.items())
        logger.log(
            level,
            "%s %s",
            what,
            text,
            exc_info=exc_info,
            extra={"aq_event": what, "aq_fields": fields},
        )


class KeyValueFormatter(logging.Formatter):
    """``time level logger message`` with the message already in key=value form."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")


def configure(level: str | int = "INFO") -> None:
    """Send aq's logs to stderr at ``level`` (used by the ``aq`` command)."""
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger("aq")
    root.handlers[:] = [handler]
    root.setLevel(level if isinstance(level, int) else level.upper())
    root.propagate = False
