"""Workflows as values: signatures, chains, groups and chords, typed.

A :class:`Canvas` is a workflow not sent yet, typed by what it takes (``I``,
the previous step's result, for a canvas inside a chain) and what it gives
(``R``). ``task.s(...)`` makes a :class:`Signature`: its arguments are checked
against the function when it is built; with the first parameter left out it
takes the previous step's result there. ``task.si(...)`` ignores it.
:func:`chain`, :func:`group` and :func:`chord` compose them; their overloads
make a step that cannot accept the previous step's result a mypy error.
``await canvas.kiq()`` sends it (:mod:`aq.workflow.launch`) and returns a
handle. A canvas turns into the JSON nodes of :mod:`aq.workflow.wire` only
when it is sent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from aq.coerce import Converter
from aq.errors import ConfigurationError, SerializationError
from aq.handle import TaskHandle
from aq.message import new_id
from aq.workflow.wire import Node

if TYPE_CHECKING:
    from aq.broker import Broker
    from aq.task import AnyTask, SendOptions
    from aq.workflow.handles import GroupHandle
    from aq.workflow.items import Items

__all__ = ["Canvas", "Chain", "Chord", "Group", "Signature"]

I_contra = TypeVar("I_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)


class Canvas(Generic[I_contra, R_co]):
    """A workflow not sent yet: takes ``I`` (inside a chain), gives ``R``."""

    __slots__ = ()

    @property
    def broker(self) -> Broker:
        raise NotImplementedError

    def to_node(self, label: str, gets_input: bool, lazy: bool) -> Node:
        """The JSON node of this canvas, checked: ``label`` names it in errors,
        ``gets_input`` says whether a previous result is passed to it, and
        ``lazy`` whether its groups may stay unmaterialised (they are started
        by the producer itself, not carried inside a message)."""
        raise NotImplementedError

    def converter(self) -> Converter | None:
        """Converts the workflow's final JSON value to its annotated type."""
        return None

    def ends_in_group(self) -> Group[Any, Any] | None:
        """The group whose members' outcomes are this workflow's, if it ends in one."""
        return None

    async def kiq(self) -> TaskHandle[R_co]:
        """Send the workflow; return once the broker has its first steps.

        Raises:
            aq.ConfigurationError: a step's arguments do not fit its task, or a
                chord needs a store and the broker has none.
            aq.SerializationError: an argument cannot be encoded, or a message is
                over ``max_message_size``; the error names the step.
            aq.BrokerError: the broker did not accept a message.
        """
        from aq.workflow.launch import launch

        return await launch(self)


def _broker_of(canvases: Iterable[Canvas[Any, Any]]) -> Broker:
    """The broker of the first of ``canvases`` that has one (an empty group has none)."""
    for canvas in canvases:
        try:
            return canvas.broker
        except ConfigurationError:
            continue
    raise ConfigurationError("a workflow of empty groups only has no broker to be sent through")


def label_of(parent: str, what: str) -> str:
    """The name of ``what`` inside the step named ``parent`` (none: the workflow)."""
    return f"{parent}, {what}" if parent else what


class Signature(Canvas[I_contra, R_co]):
    """One task call in a workflow: ``task.s(...)`` or ``task.si(...)``.

    Attributes:
        task: the task called.
        args: its positional arguments (after the previous result, unless immutable).
        kwargs: its keyword arguments.
        immutable: whether the previous step's result is ignored (``.si``).
    """

    __slots__ = ("_fits", "_options", "args", "immutable", "kwargs", "task")

    def __init__(
        self,
        task: AnyTask,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        immutable: bool,
        options: SendOptions | None = None,
        check: bool = True,
    ) -> None:
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.immutable = immutable
        self._options = options
        self._fits: dict[bool, str] = {}
        if task.kind == "stream":
            raise ConfigurationError(
                f"{task.name} is an async-generator task: its items stream to one handle, "
                "so it cannot be a step of a workflow"
            )
        if (
            check
            and not self._binds(gets_input=False)
            and (immutable or not self._binds(gets_input=True))
        ):
            raise ConfigurationError(
                f"{self!r} does not fit {task.name}{task.signature}: {self._bind_error(False)}"
            )

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.task.name}.{'si' if self.immutable else 's'}({', '.join(parts)})"

    @property
    def broker(self) -> Broker:
        return self.task.broker

    def _bind_error(self, gets_input: bool) -> str:
        """Why the arguments (after a previous result, if ``gets_input``) do not
        fit the function; ``""`` if they do. Worked out once for each way."""
        error = self._fits.get(gets_input)
        if error is None:
            try:
                self.task.signature.bind(
                    *((None,) if gets_input else ()), *self.args, **self.kwargs
                )
                error = ""
            except TypeError as exc:
                error = str(exc)
            self._fits[gets_input] = error
        return error

    def _binds(self, gets_input: bool) -> bool:
        return not self._bind_error(gets_input)

    def options(
        self,
        *,
        link: Canvas[Any, Any] | Sequence[Canvas[Any, Any]] = (),
        link_error: Canvas[Any, Any] | Sequence[Canvas[Any, Any]] = (),
        **options: Any,
    ) -> Signature[I_contra, R_co]:
        """This call with per-call settings: those of ``task.options()`` (``delay``,
        ``priority``, ``queue``, ``headers``, ``expires``, ``timeout``...), and

        Args:
            link: signatures started with this call's result when it succeeds.
            link_error: signatures started with an :class:`aq.Failure` describing
                the error when it fails for good (for a chord's body: when a
                member of its chord fails).
        """
        old = self._options
        new = self.task.options(link=link, link_error=link_error, **options)._options
        if old is not None:  # settings given before stay unless given again; callbacks add up
            given = {
                f.name: getattr(new, f.name)
                for f in dataclasses.fields(new)
                if getattr(new, f.name) != f.default
            }
            given["link"] = old.link + new.link
            given["link_error"] = old.link_error + new.link_error
            new = dataclasses.replace(old, **given)
        return Signature(self.task, self.args, self.kwargs, self.immutable, new)

    def converter(self) -> Converter | None:
        return self.task.return_converter

    def to_node(self, label: str, gets_input: bool, lazy: bool, check: bool = True) -> Node:
        task = self.task
        takes = gets_input and not self.immutable
        if check and not self._binds(takes):
            hint = (
                "; it is called with the previous step's result first: use .si(...) to ignore it"
                if takes
                else ""
            )
            raise ConfigurationError(
                f"{label or 'the call'}: {self!r} does not fit "
                f"{task.name}{task.signature}: {self._bind_error(takes)}{hint}"
            )
        if not lazy:  # carried inside another message: its own encoding would not name it
            self._check_encodable(label, takes)
        config, opts = task.config, self._options
        if config.unique_for is not None or (opts and (opts.unique_key or opts.unique_for)):
            raise ConfigurationError(
                f"{label or 'the call'}: {task.name} is a unique task (unique_for), and a "
                "workflow step cannot join another caller's run: send it on its own"
            )
        if label and opts is not None and opts.task_id is not None:
            raise ConfigurationError(
                f"{label}: task_id applies to a call sent alone, or to a whole workflow's "
                "first call, not to a step inside it"
            )
        node: Node = {
            "task": task.name,
            "queue": (opts.queue if opts and opts.queue else None) or config.queue,
            "args": list(self.args),
            "kwargs": self.kwargs,
            "label": f"{label or 'the call'} ({task.name})",
        }
        if self.immutable:
            node["immutable"] = True
        if config.max_attempts is not None:  # left out: the worker's default
            node["max_attempts"] = config.max_attempts
        priority = opts.priority if opts and opts.priority is not None else config.priority
        if priority:
            node["priority"] = priority
        if opts is not None:
            _add_options(node, opts)
        if opts is not None and opts.link:
            node["link"] = [c.to_node(label_of(label, "link"), True, False) for c in opts.link]
        if opts is not None and opts.link_error:
            node["link_error"] = [
                c.to_node(label_of(label, "link_error"), True, False) for c in opts.link_error
            ]
        return node

    def _check_encodable(self, label: str, takes: bool) -> None:
        dumps = self.task.broker.serializer.dumps
        for place, value in [*enumerate(self.args, int(takes)), *self.kwargs.items()]:
            try:
                dumps(value)
            except SerializationError as exc:
                name = self.task.parameter_name(place) if isinstance(place, int) else place
                raise SerializationError(
                    f"{label or 'the call'} ({self.task.name}): argument {name!r} cannot be "
                    f"sent: {exc}"
                ) from exc

    @property
    def send_options(self) -> SendOptions | None:
        """The per-call settings given with ``.options()``, if any."""
        return self._options

    def check_complete(self) -> None:
        """Check that the arguments make a whole call, with no previous result.

        Raises:
            aq.ConfigurationError: they do not.
        """
        if not self._binds(False):
            raise ConfigurationError(
                f"{self!r} does not fit {self.task.name}{self.task.signature}: "
                f"{self._bind_error(False)}"
            )

    @property
    def is_plain(self) -> bool:
        """Whether ``kiq()`` can send it as a plain task (no callbacks)."""
        return self._options is None or not (self._options.link or self._options.link_error)

    async def kiq(self) -> TaskHandle[R_co]:
        if self.is_plain and self._binds(False):
            from aq.task import _DEFAULT_OPTIONS

            options = self._options or _DEFAULT_OPTIONS
            return await self.task.send(self.args, self.kwargs, options)  # type: ignore[no-any-return]
        return await super().kiq()


def _add_options(node: Node, opts: SendOptions) -> None:
    if opts.headers:
        node["headers"] = dict(opts.headers)
    if opts.timeout is not None:
        node["timeout"] = opts.timeout
    # Relative times count from when the step starts; datetimes stay where they are.
    if opts.delay:
        node["delay"] = opts.delay
    elif opts.eta is not None:
        node["eta"] = opts.eta
    if opts.expires_in is not None:
        node["expires"] = opts.expires_in
    elif opts.expires_at is not None:
        node["expires_at"] = opts.expires_at


def callbacks(given: Canvas[Any, Any] | Sequence[Canvas[Any, Any]]) -> tuple[Canvas[Any, Any], ...]:
    """``link`` or ``link_error`` as given (one canvas or several), checked."""
    items = (given,) if isinstance(given, Canvas) else tuple(given)
    for item in items:
        if not isinstance(item, Canvas):
            raise ConfigurationError(f"link and link_error take signatures, not {item!r}")
    return items


class Chain(Canvas[I_contra, R_co]):
    """Steps run one after another, each given the previous one's result."""

    __slots__ = ("steps",)

    def __init__(self, steps: Sequence[Canvas[Any, Any]]) -> None:
        if not steps:
            raise ConfigurationError("a chain needs at least one step")
        for step in steps:
            if not isinstance(step, Canvas):
                raise ConfigurationError(f"chain() takes signatures and workflows, not {step!r}")
        self.steps = tuple(steps)

    def __repr__(self) -> str:
        return f"chain({', '.join(map(repr, self.steps))})"

    @property
    def broker(self) -> Broker:
        return _broker_of(self.steps)

    def to_node(self, label: str, gets_input: bool, lazy: bool) -> Node:
        return {
            "chain": [
                step.to_node(
                    label_of(label, f"chain step {i + 1}"), gets_input or i > 0, lazy and i == 0
                )
                for i, step in enumerate(self.steps)
            ]
        }

    def converter(self) -> Converter | None:
        return self.steps[-1].converter()

    def ends_in_group(self) -> Group[Any, Any] | None:
        return self.steps[-1].ends_in_group()


class Group(Canvas[I_contra, list[R_co]]):
    """Members run at once, each given the same input; the result is the list of
    theirs, in order."""

    __slots__ = ("_members", "_source")

    def __init__(
        self,
        members: Iterable[Canvas[Any, Any]] | None = None,
        source: Items | None = None,
    ) -> None:
        self._source = source
        self._members: tuple[Canvas[Any, Any], ...] = ()
        if members is not None:
            self._members = tuple(members)
            for member in self._members:
                if not isinstance(member, Canvas):
                    raise ConfigurationError(
                        f"group() takes signatures and workflows, not {member!r}"
                    )

    def __repr__(self) -> str:
        if self._source is not None:
            return repr(self._source)
        return f"group({', '.join(map(repr, self._members))})"

    @property
    def broker(self) -> Broker:
        if self._source is not None:
            return self._source.task.broker
        if not self._members:
            raise ConfigurationError("an empty group has no broker to be sent through")
        return self._members[0].broker

    def members_node(self, label: str, what: str, gets_input: bool, lazy: bool) -> Any:
        if self._source is not None:
            items = self._source.nodes(label)
            return items if lazy else list(items)
        return [
            member.to_node(label_of(label, f"{what} {i + 1}"), gets_input, lazy)
            for i, member in enumerate(self._members)
        ]

    def to_node(self, label: str, gets_input: bool, lazy: bool) -> Node:
        return {"group": self.members_node(label, "group member", gets_input, lazy)}

    def ends_in_group(self) -> Group[Any, Any] | None:
        return self

    def converter(self) -> Converter | None:
        member = self.member_converter()

        def convert(values: Any) -> Any:
            if not isinstance(values, list):
                return values
            return [
                value if value is None or (c := member(i)) is None else c(value)
                for i, value in enumerate(values)
            ]

        return convert

    def member_converter(self) -> Callable[[int], Converter | None]:
        """The converter of each member's result, by index."""
        if self._source is not None:
            convert = self._source.converter()
            return lambda index: convert
        converters = [member.converter() for member in self._members]
        return lambda index: converters[index] if index < len(converters) else None

    async def kiq(self) -> GroupHandle[R_co]:
        """Send the group; its handle gives the members' results (see
        :class:`aq.GroupHandle`). An empty group's handle has ``[]`` at once."""
        from aq.workflow.handles import GroupHandle, GroupWaiter
        from aq.workflow.launch import launch

        if self._source is None and not self._members:
            return GroupHandle(None, new_id(), "group()", GroupWaiter(0), lambda index: None)

        return await launch(self)  # type: ignore[return-value]


class Chord(Canvas[I_contra, R_co]):
    """A group, then a body given the list of its members' results."""

    __slots__ = ("body", "header")

    def __init__(self, header: Group[Any, Any], body: Canvas[Any, Any]) -> None:
        if not isinstance(header, Group) or not isinstance(body, Canvas):
            raise ConfigurationError("chord() takes a group and a signature or workflow")
        self.header = header
        self.body = body

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    @property
    def broker(self) -> Broker:
        return _broker_of((self.body, self.header))

    def to_node(self, label: str, gets_input: bool, lazy: bool) -> Node:
        return {
            "chord": self.header.members_node(label, "chord member", gets_input, lazy),
            "body": self.body.to_node(label_of(label, "chord body"), True, False),
        }

    def converter(self) -> Converter | None:
        return self.body.converter()

    def ends_in_group(self) -> Group[Any, Any] | None:
        return self.body.ends_in_group()
