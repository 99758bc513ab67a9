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
