"""The ``aq`` command as real processes: help, bad input, signals and the supervisor.

Each test runs ``python -m aq worker tests.apps.basic:broker ...`` from the
repository root, reads its stderr line by line and waits for specific log
events (``time level logger event key=value ...``), each wait bounded by a
timeout, so nothing depends on fixed sleeps. Every process started here is
killed in a ``finally`` if it is still running, and so are the worker
processes a supervisor started.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

import aq

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
APP = "tests.apps.basic:broker"
PYTHON_M_AQ = (sys.executable, "-m", "aq")
AQ_SCRIPT = Path(sys.executable).with_name("aq")  # the console script installed beside python
TIMEOUT = 10.0
"""The bound on every wait for a log line or an exit; a healthy run takes a fraction of it."""

_HAVE_PROC = Path("/proc/self/stat").exists()
_LINE = re.compile(
    r"^(?P<time>\S+ \S+) (?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) (?P<logger>\S+) (?P<name>\S+)"
    r"(?: (?P<rest>.*))?$"
)
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def _env() -> dict[str, str]:
    """The test's environment, without AQ_BROKER_URL and with plain, unwrapped output."""
    env = {k: v for k, v in os.environ.items() if k not in ("AQ_BROKER_URL", "FORCE_COLOR")}
    env.update(TERM="dumb", NO_COLOR="1", COLUMNS="200", PYTHONUNBUFFERED="1")
    return env


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value[1:-1])
    return value


@dataclass(frozen=True)
class LogEvent:
    """One structured log line: ``index`` is its line number on stderr."""

    index: int
    level: str
    logger: str
    name: str
    fields: dict[str, str]
    time: datetime.datetime


def _parse(index: int, line: str) -> LogEvent | None:
    m = _LINE.match(line)
    if m is None:
        return None
    fields = {k: _unquote(v) for k, v in _FIELD.findall(m["rest"] or "")}
    when = datetime.datetime.strptime(m["time"], "%Y-%m-%d %H:%M:%S,%f")
    return LogEvent(index, m["level"], m["logger"], m["name"], fields, when)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie, exited but not reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers signal 0: an orphaned worker is reaped by whatever
    # process adopts it, which in a container may be slow to do so or never do it.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not _HAVE_PROC  # without /proc, signal 0 is all there is to go on
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _is_supervised_worker(pid: int) -> bool:
    """Whether ``pid`` is still one of aq's worker processes (and not a reused pid)."""
    if not _alive(pid):
        return False
    if not _HAVE_PROC:
        return True
    try:
        return b"--supervised" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


async def _wait_gone(pid: int, timeout: float = TIMEOUT) -> None:
    """Wait until ``pid``, which is not our child process, has exited.

    There is no event to await here: only a process's parent can wait() for it
    (and asyncio has no pidfd watch for other processes), so this polls signal 0
    at a short interval, for at most ``timeout`` seconds.
    """
    interval = 0.05
    for _ in range(int(timeout / interval) + 1):
        if not _alive(pid):
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"process {pid} still running {timeout}s later")


def _kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL ``proc`` unless asyncio has seen it exit.

    Not ``proc.kill()``: that polls (so reaps) an exited child on this thread,
    racing asyncio's child watcher, which then reports exit code 255. An exited
    but unreaped child keeps its pid, so the signal cannot reach another process.
    """
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)


class AqProcess:
    """A running ``aq`` command whose stderr is read line by line as it is written."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.events: list[LogEvent] = []
        self.eof = False
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        try:
            async for raw in self.proc.stderr:
                line = raw.decode(errors="replace").rstrip("\r\n")
                parsed = _parse(len(self.lines), line)
                self.lines.append(line)
                if parsed is not None:
                    self.events.append(parsed)
                async with self._changed:
                    self._changed.notify_all()
        finally:
            self.eof = True
            async with self._changed:
                self._changed.notify_all()

    def find(self, name: str, *, after: int = -1, **fields: str | int) -> list[LogEvent]:
        """The events logged so far named ``name``, after line ``after``, with ``fields``."""
        want = {k: str(v) for k, v in fields.items()}
        return [
            e
            for e in self.events
            if e.index > after
            and e.name == name
            and all(e.fields.get(k) == v for k, v in want.items())
        ]

    async def wait_for(
        self,
        name: str,
        count: int = 1,
        *,
        after: int = -1,
        timeout: float = TIMEOUT,
        **fields: str | int,
    ) -> list[LogEvent]:
        """Wait until ``count`` events like :meth:`find`'s have been logged; return them."""

        def enough() -> bool:
            return self.eof or len(self.find(name, after=after, **fields)) >= count

        what = f"{count} x {name} {fields or ''} after line {after}"
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(enough)
        except TimeoutError:
            raise AssertionError(f"no {what} within {timeout}s; stderr:\n{self.stderr}") from None
        found = self.find(name, after=after, **fields)
        if len(found) < count:
            raise AssertionError(f"stderr closed before {what}; stderr:\n{self.stderr}")
        return found[:count]

    async def wait_exit(self, timeout: float = TIMEOUT) -> int:
        """Wait for the process to exit (and its stderr to close); return its exit code."""
        try:
            async with asyncio.timeout(timeout):
                code = await self.proc.wait()
                await self._reader
        except TimeoutError:
            raise AssertionError(f"running after {timeout}s; stderr:\n{self.stderr}") from None
        return code

    def signal(self, sig: signal.Signals) -> int:
        """Send ``sig``; return the stderr line index it was sent after."""
        os.kill(self.proc.pid, sig)  # see _kill for why not proc.send_signal
        return len(self.lines) - 1

    async def close(self) -> None:
        """Kill the process and any worker it started, if still running, and reap it."""
        _kill(self.proc)
        for started in self.find("supervisor.child_started"):
            pid = int(started.fields["pid"])
            if _is_supervised_worker(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        try:
            async with asyncio.timeout(TIMEOUT):
                await self.proc.wait()
                await self._reader
        finally:
            self._reader.cancel()


@contextlib.asynccontextmanager
async def aq_worker(
    *options: str, app: str = APP, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> AsyncIterator[AqProcess]:
    """``python -m aq worker APP *options`` in ``cwd``, killed on the way out."""
    proc = await asyncio.create_subprocess_exec(
        *PYTHON_M_AQ,
        "worker",
        app,
        *options,
        cwd=cwd,
        env=_env() | (env or {}),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    running = AqProcess(proc)
    try:
        yield running
    finally:
        await running.close()


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


async def run_aq(*args: str, command: Sequence[str] = PYTHON_M_AQ) -> Result:
    """Run an ``aq`` command that should exit by itself; return its code and output."""
    proc = await asyncio.create_subprocess_exec(
        *command,
        *args,
        cwd=ROOT,
        env=_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(TIMEOUT):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            _kill(proc)
            await proc.communicate()
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def _lists_option(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(PYTHON_M_AQ, id="python-m-aq"),
        pytest.param(
            (str(AQ_SCRIPT),),
            id="aq-script",
            marks=pytest.mark.skipif(not AQ_SCRIPT.exists(), reason="aq script not installed"),
        ),
    ],
)
async def test_worker_help_lists_every_public_option(command: tuple[str, ...]) -> None:
    result = await run_aq("worker", "--help", command=command)
    assert result.code == 0, result.stderr
    for option in (
        "--concurrency",
        "--processes",
        "--queues",
        "--shutdown-timeout",
        "--max-tasks-per-child",
        "--log-level",
        "--loop",
        "--no-supervise",
        "--scheduler",
        "--lease-time",
        "--autoscale",
        "--scale-down-after",
        "--max-memory-per-child",
        "--reload",
        "--reload-dir",
    ):
        assert _lists_option(result.stdout, option), f"{option} missing from:\n{result.stdout}"
    for internal in ("--supervised", "--crashes"):  # how the supervisor starts its children
        assert not _lists_option(result.stdout, internal)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("nocolon", "invalid app 'nocolon': write MODULE:ATTRIBUTE"),
        ("tests.apps.basic:missing", "module 'tests.apps.basic' has no attribute 'missing'"),
        ("no.such.module:broker", "cannot import module 'no.such.module'"),
        ("tests.apps.basic:NOT_A_BROKER", "basic:NOT_A_BROKER is a str, not an aq.Broker"),
        ("tests.apps.basic:add", "tests.apps.basic:add is a Task, not an aq.Broker"),
    ],
)
async def test_a_bad_app_spec_exits_2_naming_the_problem(spec: str, problem: str) -> None:
    result = await run_aq("worker", spec)
    assert result.code == 2, result.stderr
    assert result.stderr.startswith("aq: error: "), result.stderr
    assert problem in result.stderr
    assert "Traceback" not in result.stderr
    assert "worker.started" not in result.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--concurrency", "0"),
        ("--concurrency", "many"),
        ("--processes", "0"),
        ("--shutdown-timeout", "-1"),
        ("--max-tasks-per-child", "0"),
        ("--log-level", "loud"),
        ("--loop", "fast"),
    ],
)
async def test_an_invalid_option_value_exits_nonzero_naming_the_option(
    option: str, value: str
) -> None:
    result = await run_aq("worker", APP, option, value)
    assert result.code != 0
    assert option in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert "worker.started" not in result.stderr


async def test_a_worker_logs_started_and_on_sigterm_stopped_then_exits_0() -> None:
    async with aq_worker("--concurrency", "4", "--shutdown-timeout", "2") as worker:
        (started,) = await worker.wait_for("worker.started")
        assert started.fields["queues"] == "default"
        assert started.fields["concurrency"] == "4"
        assert started.fields["broker"] == "memory://"
        sent_after = worker.signal(signal.SIGTERM)
        await worker.wait_for("worker.stopped", after=sent_after)
        assert await worker.wait_exit() == 0, worker.stderr
        assert "Traceback" not in worker.stderr


@pytest.mark.parametrize(("option", "loop"), [((), "uvloop"), (("--loop", "asyncio"), "asyncio")])
async def test_the_worker_runs_on_uvloop_when_installed_unless_told_otherwise(
    option: tuple[str, ...], loop: str
) -> None:
    async with aq_worker(*option) as worker:
        (started,) = await worker.wait_for("worker.started")
        assert started.fields["loop"] == loop


@pytest.mark.parametrize("broker", ["redis", "amqp"], indirect=True)
async def test_a_worker_on_uvloop_serves_each_network_broker(broker: aq.Broker) -> None:
    # uvloop's transports are not Python objects: nothing in a transport may rely on them.
    @broker.task(name="remote.add")
    async def add(a: int, b: int) -> int:
        return a + b

    env = {"AQ_BROKER_URL": broker.url}
    async with aq_worker("--loop", "uvloop", app="tests.apps.remote:broker", env=env) as worker:
        (started,) = await worker.wait_for("worker.started")
        assert started.fields["loop"] == "uvloop"
        handles = [await add.kiq(i, i) for i in range(50)]
        assert [await h.result(timeout=TIMEOUT) for h in handles] == [2 * i for i in range(50)]


async def test_the_supervisor_restarts_a_killed_child_and_stops_all_on_sigterm() -> None:
    async with aq_worker("--processes", "2", "--shutdown-timeout", "2") as supervisor:
        first = await supervisor.wait_for("supervisor.child_started", 2)
        pids = {e.fields["slot"]: int(e.fields["pid"]) for e in first}
        assert sorted(pids) == ["0", "1"]
        assert len(set(pids.values())) == 2
        assert supervisor.pid not in pids.values()
        await supervisor.wait_for("worker.started", 2)

        victim = pids["0"]
        killed_after = len(supervisor.lines) - 1
        os.kill(victim, signal.SIGKILL)
        (exited,) = await supervisor.wait_for(
            "supervisor.child_exited", after=killed_after, pid=victim
        )
        assert exited.fields["slot"] == "0"
        assert exited.fields["code"] == str(-signal.SIGKILL)
        (restarted,) = await supervisor.wait_for(
            "supervisor.child_started", after=exited.index, slot=0
        )
        replacement = int(restarted.fields["pid"])
        assert replacement not in {victim, pids["1"]}
        await supervisor.wait_for("worker.started", after=restarted.index)

        sent_after = supervisor.signal(signal.SIGTERM)
        await supervisor.wait_for("worker.stopped", 2, after=sent_after)
        (stopped,) = await supervisor.wait_for("supervisor.stopped", after=sent_after)
        assert stopped.fields["restarts"] == "1"
        assert await supervisor.wait_exit() == 0, supervisor.stderr
        # The supervisor waited for (and so reaped) every child before exiting.
        for pid in (victim, pids["1"], replacement):
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert "Traceback" not in supervisor.stderr


async def test_children_stop_by_themselves_when_the_supervisor_is_killed() -> None:
    async with aq_worker("--processes", "2", "--shutdown-timeout", "2") as supervisor:
        started = await supervisor.wait_for("supervisor.child_started", 2)
        children = [int(e.fields["pid"]) for e in started]
        await supervisor.wait_for("worker.started", 2)

        killed_after = supervisor.signal(signal.SIGKILL)
        # The children inherited the supervisor's stderr, so their logs still reach us:
        # the end of their stdin pipe makes them stop gracefully.
        await supervisor.wait_for("worker.stopped", 2, after=killed_after)
        for pid in children:
            await _wait_gone(pid)
        assert await supervisor.wait_exit() == -signal.SIGKILL
        assert "Traceback" not in supervisor.stderr


@pytest.mark.slow
async def test_max_tasks_per_child_runs_the_worker_under_a_supervisor() -> None:
    async with aq_worker("--max-tasks-per-child", "100", "--shutdown-timeout", "2") as supervisor:
        (started,) = await supervisor.wait_for("supervisor.started")
        assert started.fields["processes"] == "1"
        (child,) = await supervisor.wait_for("supervisor.child_started")
        assert int(child.fields["pid"]) != supervisor.pid
        await supervisor.wait_for("worker.started")
        sent_after = supervisor.signal(signal.SIGTERM)
        await supervisor.wait_for("supervisor.stopped", after=sent_after)
        assert await supervisor.wait_exit() == 0, supervisor.stderr


@pytest.mark.parametrize("broker", ["redis", "amqp"], indirect=True)
async def test_max_tasks_per_child_replaces_the_child_after_that_many_tasks(
    broker: aq.Broker,
) -> None:
    @broker.task(name="remote.pid")  # the producer's view of tests/apps/remote.py
    async def pid() -> int:
        raise NotImplementedError("runs in the worker process")

    env = {"AQ_BROKER_URL": broker.url}
    args = ("--processes", "1", "--max-tasks-per-child", "3", "--shutdown-timeout", "5")
    async with aq_worker(*args, app="tests.apps.remote:broker", env=env) as supervisor:
        await supervisor.wait_for("worker.started", 2)  # the worker and the isolation worker
        handles = [await pid.kiq() for _ in range(10)]
        pids = [await h.result(timeout=TIMEOUT) for h in handles]
        children = {
            int(e.fields["pid"]) for e in supervisor.find("supervisor.child_started", slot=0)
        }
        replaced = supervisor.find("supervisor.child_exited", slot=0, code=0)
    served = Counter(pids)
    assert set(served) <= children
    assert max(served.values()) <= 3
    assert len(served) >= 4  # 10 tasks, at most 3 to a child
    assert len(replaced) >= 3
    assert "Traceback" not in supervisor.stderr


@pytest.mark.parametrize("option", ["--processes", "--max-tasks-per-child"])
async def test_options_that_need_the_supervisor_are_refused_without_it(option: str) -> None:
    result = await run_aq("worker", APP, "--no-supervise", option, "2")
    assert result.code == 2, result.stderr
    assert f"{option} needs the supervisor: drop --no-supervise" in result.stderr


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (("--autoscale", "4,1"), "--autoscale MIN,MAX needs MIN <= MAX, not 4,1: write "),
        (("--autoscale", "x"), "--autoscale takes MIN,MAX, two whole numbers of processes"),
        (("--autoscale", "0,2"), "--autoscale MIN must be at least 1 (one worker always runs)"),
        (("--max-memory-per-child", "0"), "'--max-memory-per-child'"),
        (("--reload", "--processes", "2"), "--reload runs one worker process: drop --processes"),
        (("--reload", "--autoscale", "1,2"), "--reload runs one worker process: drop --autoscale"),
        (
            ("--autoscale", "1,3", "--processes", "2"),
            "--autoscale MIN,MAX sets the number of processes: drop --processes",
        ),
        (("--reload", "--no-supervise"), "--reload needs the supervisor: drop --no-supervise"),
        (
            ("--autoscale", "1,2", "--no-supervise"),
            "--autoscale needs the supervisor: drop --no-supervise",
        ),
        (
            ("--max-memory-per-child", "100", "--no-supervise"),
            "--max-memory-per-child needs the supervisor: drop --no-supervise",
        ),
        (("--reload-dir", "src"), "--reload-dir names what --reload watches: add --reload"),
        (
            ("--reload", "--reload-dir", "no/such/dir"),
            "--reload-dir no/such/dir: no such directory",
        ),
        (
            ("--scale-down-after", "5"),
            "--scale-down-after applies to --autoscale: add --autoscale MIN,MAX",
        ),
        (("--autoscale", "1,2"), "memory:// has queues of its own in each worker process"),
    ],
)
async def test_a_bad_operations_option_exits_2_saying_what_to_change(
    options: tuple[str, ...], problem: str
) -> None:
    result = await run_aq("worker", APP, *options)
    assert result.code == 2, result.stderr
    assert problem in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert "worker.started" not in result.stderr


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
async def test_one_worker_runs_under_a_supervisor_with_an_isolation_worker_by_default(
    broker: aq.Broker,
) -> None:
    env = {"AQ_BROKER_URL": broker.url}
    async with aq_worker(app="tests.apps.remote:broker", env=env) as supervisor:
        (started,) = await supervisor.wait_for("supervisor.started")
        assert (started.fields["processes"], started.fields["isolation"]) == ("1", "True")
        children = await supervisor.wait_for("supervisor.child_started", 2)
        assert sorted(e.fields["slot"] for e in children) == ["0", "isolation"]
        workers = await supervisor.wait_for("worker.started", 2)
        assert sorted(e.fields["crashes"] for e in workers) == ["isolate", "isolated"]
        assert [e.fields["concurrency"] for e in workers if e.fields["crashes"] == "isolated"] == [
            "1"
        ]
        sent_after = supervisor.signal(signal.SIGTERM)
        await supervisor.wait_for("supervisor.stopped", after=sent_after)
        assert await supervisor.wait_exit() == 0, supervisor.stderr


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
async def test_no_supervise_runs_the_worker_here_and_keeps_its_isolation_worker(
    broker: aq.Broker,
) -> None:
    env = {"AQ_BROKER_URL": broker.url}
    args = ("--no-supervise", "--shutdown-timeout", "2")
    async with aq_worker(*args, app="tests.apps.remote:broker", env=env) as worker:
        (started,) = await worker.wait_for("supervisor.started")
        assert (started.fields["processes"], started.fields["isolation"]) == ("0", "True")
        (child,) = await worker.wait_for("supervisor.child_started", slot="isolation")
        isolation_pid = int(child.fields["pid"])
        assert isolation_pid != worker.pid
        workers = await worker.wait_for("worker.started", 2)
        assert sorted(e.fields["crashes"] for e in workers) == ["isolate", "isolated"]
        sent_after = worker.signal(signal.SIGTERM)
        await worker.wait_for("worker.stopped", 2, after=sent_after)
        assert await worker.wait_exit() == 0, worker.stderr
        await _wait_gone(isolation_pid)


async def test_a_child_that_dies_after_it_consumed_is_restarted_at_once() -> None:
    async with aq_worker("--shutdown-timeout", "2") as supervisor:
        (child,) = await supervisor.wait_for("supervisor.child_started")
        await supervisor.wait_for("worker.started")
        killed_after = len(supervisor.lines) - 1
        os.kill(int(child.fields["pid"]), signal.SIGKILL)  # as a task calling os._exit would
        (exited,) = await supervisor.wait_for("supervisor.child_exited", after=killed_after)
        seen_exit = asyncio.get_running_loop().time()
        await supervisor.wait_for("supervisor.child_started", after=exited.index)
        restarted_within = asyncio.get_running_loop().time() - seen_exit
    assert exited.fields["consumed"] == "True"
    # No back-off (a start-up failure's starts at 0.5 s), only the floor of one start
    # per second.
    assert restarted_within < max(0.0, 1.0 - float(exited.fields["uptime"])) + 0.4


async def test_a_child_that_dies_before_it_consumed_is_restarted_with_growing_delays() -> None:
    env = {"AQ_BROKER_URL": "redis://127.0.0.1:1/0?publish_timeout=0.1"}  # nothing listens
    async with aq_worker(app="tests.apps.remote:broker", env=env) as supervisor:
        starts = await supervisor.wait_for("supervisor.child_started", 3, slot=0, timeout=20)
        exits = supervisor.find("supervisor.child_exited", slot=0)
    assert [e.fields["consumed"] for e in exits[:2]] == ["False", "False"]
    assert [e.fields["code"] for e in exits[:2]] == ["2", "2"]
    waits = [(b.time - a.time).total_seconds() for a, b in zip(exits, starts[1:], strict=False)]
    assert waits[0] >= 0.5  # the log's clock has millisecond steps
    assert waits[1] >= 1.0
