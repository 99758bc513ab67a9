"""Composing workflows: ``aq.chain``, ``aq.group`` and ``aq.chord``.

Their overloads carry the types through: each step of a chain must accept the
result type of the step before it (a :class:`~aq.workflow.canvas.Canvas` is
contravariant in what it takes), a chord's body must accept the list of its
header's results, and the result of the whole is the last step's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar, overload

from aq.workflow.canvas import Canvas, Chain, Chord, Group

__all__ = ["chain", "chord", "group"]

I = TypeVar("I")  # noqa: E741 - the input type, as in the docs
R = TypeVar("R")
T = TypeVar("T")
R1 = TypeVar("R1")
R2 = TypeVar("R2")
R3 = TypeVar("R3")
R4 = TypeVar("R4")
R5 = TypeVar("R5")
R6 = TypeVar("R6")


@overload
def chain(a: Canvas[I, R1], /) -> Chain[I, R1]: ...
@overload
def chain(a: Canvas[I, R1], b: Canvas[R1, R2], /) -> Chain[I, R2]: ...
@overload
def chain(a: Canvas[I, R1], b: Canvas[R1, R2], c: Canvas[R2, R3], /) -> Chain[I, R3]: ...
@overload
def chain(
    a: Canvas[I, R1], b: Canvas[R1, R2], c: Canvas[R2, R3], d: Canvas[R3, R4], /
) -> Chain[I, R4]: ...
@overload
def chain(
    a: Canvas[I, R1],
    b: Canvas[R1, R2],
    c: Canvas[R2, R3],
    d: Canvas[R3, R4],
    e: Canvas[R4, R5],
    /,
) -> Chain[I, R5]: ...
@overload
def chain(
    a: Canvas[I, R1],
    b: Canvas[R1, R2],
    c: Canvas[R2, R3],
    d: Canvas[R3, R4],
    e: Canvas[R4, R5],
    f: Canvas[R5, R6],
    /,
) -> Chain[I, R6]: ...
@overload
def chain(
    a: Canvas[Any, Any],
    b: Canvas[Any, Any],
    c: Canvas[Any, Any],
    d: Canvas[Any, Any],
    e: Canvas[Any, Any],
    f: Canvas[Any, Any],
    g: Canvas[Any, Any],
    /,
    *steps: Canvas[Any, Any],
) -> Chain[Any, Any]: ...
def chain(*steps: Canvas[Any, Any]) -> Chain[Any, Any]:
    """Run ``steps`` one after another; each step's result is passed as the first
    argument of the next (unless it was made with ``.si``). Chains of up to six
    steps are checked by mypy step by step; longer ones are not (nest them).

    Raises:
        aq.ConfigurationError: no steps, or a step is not a signature or workflow.
    """
    return Chain(steps)


@overload
def group(members: Iterable[Canvas[I, R]], /) -> Group[I, R]: ...
@overload
def group(*members: Canvas[I, R]) -> Group[I, R]: ...
def group(*members: Canvas[I, R] | Iterable[Canvas[I, R]]) -> Group[I, R]:
    """Run ``members`` at once: ``group(a.s(1), b.s(2))`` or ``group(sigs)``. The
    result is the list of their results, in order; an empty group's is ``[]``.

    Raises:
        aq.ConfigurationError: a member is not a signature or workflow.
    """
    if len(members) == 1 and not isinstance(members[0], Canvas):
        return Group(members[0])
    return Group(members)  # type: ignore[arg-type]


def chord(header: Group[I, T] | Iterable[Canvas[I, T]], body: Canvas[list[T], R]) -> Chord[I, R]:
    """Run the group ``header``, then ``body`` with the list of its results; the
    body is sent exactly once, after every member has succeeded. Needs a store
    (docs/workflows.md).

    Raises:
        aq.ConfigurationError: the header or body is not a group or workflow.
    """
    return Chord(header if isinstance(header, Group) else Group(header), body)
