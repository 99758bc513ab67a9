"""Looking for a secret everywhere aq could have shown it: log records, and an
error with every error chained to it (its text, its repr, its traceback)."""

from __future__ import annotations

import traceback

import pytest

__all__ = ["assert_shown_nowhere", "shown"]


def shown(
    caplog: pytest.LogCaptureFixture | None = None, error: BaseException | None = None
) -> str:
    """Everything ``caplog`` captured (each record's message, formatted line and
    attributes, structured fields included) and everything ``error`` shows."""
    texts: list[str] = []
    if caplog is not None:
        texts.append(caplog.text)
        texts += [f"{record.getMessage()}\n{vars(record)!r}" for record in caplog.records]
    if error is not None:
        texts.append("".join(traceback.format_exception(error)))
        seen: BaseException | None = error
        for _ in range(32):  # the chain, however it is linked
            if seen is None:
                break
            texts += [str(seen), repr(seen), repr(seen.args)]
            seen = seen.__cause__ or seen.__context__
    return "\n".join(texts)


def assert_shown_nowhere(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret was shown:\n{text}"
