"""Looking for a secret everywhere aq could have shown it: log records, an
error with every error chained to it (its text, its repr, its traceback), and
what the ``aq`` command prints."""

from __future__ import annotations

import asyncio
import traceback

import pytest

from tests.test_cli import PYTHON_M_AQ, ROOT, TIMEOUT, _env, _kill

__all__ = ["aq_command", "assert_shown_nowhere", "shown"]


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


async def aq_command(*args: str, url: str) -> tuple[int, str]:
    """Run ``python -m aq *args`` with ``url`` as ``AQ_BROKER_URL`` until it exits;
    its exit code and everything it printed (stdout and stderr)."""
    process = await asyncio.create_subprocess_exec(
        *PYTHON_M_AQ,
        *args,
        cwd=ROOT,
        env=_env() | {"AQ_BROKER_URL": url},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(3 * TIMEOUT):
            out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            _kill(process)
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")
