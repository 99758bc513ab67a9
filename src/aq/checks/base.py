"""What a check is: the :class:`Checker` of an annotation and the :class:`Mismatch` it raises.

A checker's ``check`` returns a decoded JSON value as its annotation's type or
raises :class:`Mismatch`, which says what was expected, what was found and
where inside the value. Messages show values through :func:`describe`, which
stays short however large or deeply nested the value is.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from typing import Any

__all__ = [
    "ANYTHING",
    "MISSING",
    "NEVER",
    "Check",
    "Checker",
    "Mismatch",
    "clip",
    "describe",
    "short_repr",
]

Check = Callable[[Any], Any]


class NEVER:
    """A type no value has: the ``fast`` type of checkers without a shortcut."""


MISSING: Any = NEVER()  # stands for an argument or field that was not given


class Mismatch(Exception):
    """A value that does not fit its annotation.

    ``path`` lists the steps from the checked value down to the offending one,
    innermost first (``"[3]"``, ``".zip"``); containers add theirs as it unwinds.
    """

    def __init__(self, expected: str, value: Any, path: list[str] | None = None) -> None:
        super().__init__(expected)
        self.expected = expected
        self.value = value
        self.path = path if path is not None else []

    def where(self, root: str) -> str:
        """The offending value's path, starting from ``root``: ``items[3].at``."""
        return root + "".join(reversed(self.path))

    def problem(self) -> str:
        """What was expected and what was found: ``expected int, got str ('x')``."""
        return f"expected {self.expected}, got {describe(self.value)}"


_REPR = reprlib.Repr()  # bounded in depth and width: a 1,000-deep list prints as [[[[...]]]]
_REPR.maxlevel = 3
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 4
_MAX_REPR = 50


def clip(text: str) -> str:
    """``text`` cut to at most 50 characters."""
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


def short_repr(value: Any) -> str:
    """A repr of at most 50 characters, however large or deep ``value`` is."""
    try:
        return clip(_REPR.repr(value))
    except Exception:  # a repr that fails, or an int too long to print
        return "..."


def describe(value: Any) -> str:
    """The type of ``value`` and a short repr of it: ``str ('minus twenty-nine')``."""
    if value is MISSING:
        return "nothing (missing)"
    if value is None:
        return "None"
    return f"{type(value).__name__} ({short_repr(value)})"


@dataclasses.dataclass(frozen=True, slots=True)
class Checker:
    """What one annotation accepts.

    Attributes:
        name: the annotation as messages show it (``list[int]``).
        check: returns the value as the annotation's type or raises
            :class:`Mismatch`; ``None`` when anything is accepted as it is.
        fast: values of exactly this type are accepted as they are, unchecked.
        natives: the types of values it may accept as they are (a union tries
            the members that take a value as it is first).
        converts: whether ``check`` may return another object than it was given.
    """

    name: str
    check: Check | None
    fast: type = NEVER
    natives: frozenset[type] = frozenset()
    converts: bool = True


ANYTHING = Checker("Any", None, converts=False)
