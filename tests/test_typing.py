"""Types are part of the API: mypy must reject wrong arguments and infer results.

tests/typing_cases/api.py marks each line that must be an error with ``# E: code``
and each ``reveal_type`` with ``# R: type``; this test runs mypy --strict over it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

CASES = Path(__file__).parent / "typing_cases" / "api.py"
_LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): (?P<level>\w+): (?P<text>.*)$")


@pytest.fixture(scope="module")
def mypy_output() -> list[tuple[int, str, str]]:
    stdout, _, _ = api.run(
        [
            "--strict",
            "--no-incremental",
            "--hide-error-context",
            "--no-error-summary",
            "--show-error-codes",
            str(CASES),
        ]
    )
    found = []
    for line in stdout.splitlines():
        match = _LINE.match(line)
        if match:
            found.append((int(match["line"]), match["level"], match["text"]))
    return found


def _expected(marker: str) -> dict[int, str]:
    lines = CASES.read_text().splitlines()
    return {
        n: line.split(f"# {marker}: ", 1)[1].strip()
        for n, line in enumerate(lines, start=1)
        if f"# {marker}: " in line
    }


@pytest.mark.timeout(120)
def test_wrong_arguments_to_kiq_are_type_errors(mypy_output: list[tuple[int, str, str]]) -> None:
    errors = {
        (n, text.rsplit("[", 1)[-1].rstrip("]"))
        for n, level, text in mypy_output
        if level == "error"
    }
    expected = {(n, code) for n, code in _expected("E").items()}
    assert errors == expected


@pytest.mark.timeout(120)
def test_results_have_the_task_return_type(mypy_output: list[tuple[int, str, str]]) -> None:
    revealed = {
        n: text.removeprefix("Revealed type is ").strip('"')
        for n, level, text in mypy_output
        if level == "note" and "Revealed" in text
    }
    expected = {n: re.sub(r"builtins\.", "", t) for n, t in _expected("R").items()}
    assert {n: re.sub(r"builtins\.", "", t) for n, t in revealed.items()} == expected
