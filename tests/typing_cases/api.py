# Checked by tests/test_typing.py with mypy --strict; each "E:" line must be reported.
from collections.abc import AsyncIterator

import aq

broker = aq.Broker("memory://")


@broker.task
async def add(x: int, y: int) -> int:
    return x + y


@broker.task(retries=2, timeout=5)
async def greet(name: str, *, loud: bool = False) -> str:
    return name


@broker.task
def double(x: int) -> int:
    return x * 2


@broker.task
async def count(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


async def good() -> None:
    handle = await add.kiq(1, 2)
    reveal_type(handle)  # R: aq.handle.TaskHandle[int]
    reveal_type(await handle.result(timeout=5))  # R: builtins.int
    reveal_type(await (await greet.options(delay=1).kiq("a", loud=True)).result())  # R: builtins.str
    reveal_type(await (await double.kiq(2)).result())  # R: builtins.int
    reveal_type(double(2))  # R: builtins.int
    reveal_type(await add(1, 2))  # R: builtins.int
    stream = await count.kiq(3)
    async for item in stream.stream():
        reveal_type(item)  # R: builtins.int


async def bad() -> None:
    await add.kiq(1, "x")  # E: arg-type
    await add.kiq(1)  # E: call-arg
    await greet.kiq("a", shout=True)  # E: call-arg
    await greet.options(priority=1).kiq(3)  # E: arg-type
    text: str = await (await add.kiq(1, 2)).result()  # E: assignment
    await double.kiq("x")  # E: arg-type


@broker.task
async def mul(x: int, y: int) -> int:
    return x * y


@broker.task
async def total(xs: list[int]) -> int:
    return sum(xs)


@broker.task
async def shout(text: str) -> str:
    return text.upper()


async def workflows() -> None:
    reveal_type(add.s(1, 2))  # R: aq.workflow.canvas.Signature[Never, builtins.int]
    reveal_type(mul.s(10))  # R: aq.workflow.canvas.Signature[builtins.int, builtins.int]
    reveal_type(double.s())  # R: aq.workflow.canvas.Signature[builtins.int, builtins.int]
    reveal_type(add.si(1, 2))  # R: aq.workflow.canvas.Signature[builtins.object, builtins.int]
    flow = aq.chain(add.s(1, 2), mul.s(10), double.s())
    reveal_type(await (await flow.kiq()).result())  # R: builtins.int
    group = aq.group(add.s(i, i) for i in range(3))
    reveal_type(await (await group.kiq()).result())  # R: builtins.list[builtins.int]
    reveal_type(await (await double.map(range(3)).kiq()).result())  # R: builtins.list[builtins.int]
    chord = aq.chord([add.s(1, 1), add.s(2, 2)], total.s())
    reveal_type(await (await chord.kiq()).result())  # R: builtins.int
    reveal_type(await (await aq.chain(add.s(1, 2), add.si(3, 4)).kiq()).result())  # R: builtins.int
    handles = await add.kiq_many([add.s(1, 2), add.s(3, 4)])
    reveal_type(handles)  # R: builtins.list[aq.handle.TaskHandle[builtins.int]]


async def bad_workflows() -> None:
    add.s("x", 2)  # E: call-overload
    add.s(1, 2, 3)  # E: call-overload
    aq.chain(add.s(1, 2), shout.s())  # E: misc
    aq.chain(add.s(1, 2), add.s(1, 2))  # E: misc
    aq.chord([add.s(1, 1)], shout.s())  # E: arg-type
    shout.map([1, 2])  # E: list-item


class Pool:
    async def fetchval(self, query: str) -> int:
        return 0


@broker.resource
async def db() -> AsyncIterator[Pool]:
    yield Pool()


@broker.resource(name="cache", producer=True)
async def cache_client() -> AsyncIterator[dict[str, bytes]]:
    yield {}


@broker.on_startup
async def open_things(state: aq.State) -> None:
    state.http = object()


@broker.on_shutdown(producer=True)
async def close_things() -> None: ...


async def lifecycle() -> None:
    reveal_type(db)  # R: aq.lifecycle.Resource[tests.typing_cases.api.Pool]
    reveal_type(db.get())  # R: tests.typing_cases.api.Pool
    reveal_type(db())  # R: tests.typing_cases.api.Pool
    reveal_type(await db.get().fetchval("select 1"))  # R: builtins.int
    reveal_type(cache_client.get())  # R: builtins.dict[builtins.str, builtins.bytes]
    reveal_type(aq.context().state)  # R: aq.lifecycle.State
    reveal_type(aq.context().state.http)  # R: Any
    reveal_type(open_things)  # R: def (state: aq.lifecycle.State) -> typing.Coroutine[Any, Any, None]


async def bad_lifecycle() -> None:
    name: str = db.get()  # E: assignment
    await db.get().fetch("select 1")  # E: attr-defined
    broker.resource(close_things)  # E: arg-type
    broker.on_startup(lambda: None)  # E: type-var


@broker.on_startup  # E: type-var
def not_async() -> None: ...


@broker.on_shutdown  # E: type-var
async def too_many(state: aq.State, other: int) -> None: ...
