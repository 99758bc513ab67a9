"""A private RabbitMQ node a reliability test may SIGKILL and restart, and a TCP
proxy in front of it that can cut or freeze every connection.

This module owns the whole life of that node: its ports, its node name, and every
file it writes (data, logs, config, Erlang cookie), all under one directory the test
hands in. It never talks to the shared node that ``scripts/services.sh`` starts on
127.0.0.1:5672, and it only ever uses 127.0.0.1.

``rabbit_server`` is a fixture for ``tests/reliability/conftest.py`` to import.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest

__all__ = ["RabbitServer", "TcpProxy", "rabbit_server"]

logger = logging.getLogger(__name__)

START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
CTL_TIMEOUT = 60.0

# Debian's /usr/sbin/rabbitmq-server is a wrapper that `su`s to the rabbitmq user (so the
# test would own su, not the VM); the script behind it runs the node as whoever calls it.
_DEBIAN_SCRIPT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
# The same goes for /usr/sbin/rabbitmqctl: run as root it `su`s to rabbitmq, whose HOME
# holds the shared node's cookie, not ours.
_DEBIAN_CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")

_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """Runs in the child between fork and exec, and survives the exec chain down to
    beam.smp: the kernel SIGKILLs the node if the test process dies without killing it
    (a crashed or hard-timed-out pytest), so no node outlives its test."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


def _server_script() -> str | None:
    return str(_DEBIAN_SCRIPT) if _DEBIAN_SCRIPT.exists() else shutil.which("rabbitmq-server")


def _ctl_script() -> str | None:
    return str(_DEBIAN_CTL) if _DEBIAN_CTL.exists() else shutil.which("rabbitmqctl")


def _program(pid: int) -> str | None:
    """The name of the program ``pid`` runs, where /proc tells (Linux)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _free_ports(count: int) -> list[int]:
    """Distinct ports that were free on 127.0.0.1 a moment ago."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


async def _until(probe: Callable[[], Awaitable[bool]]) -> None:
    """Retry ``probe`` until it returns true; the caller bounds it with a timeout. Nothing
    announces that a node has booted or that epmd has dropped a dead node's name."""
    while True:
        if await probe():
            return
        await asyncio.sleep(0.05)


async def _accepts_tcp(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _epmd_names() -> list[str]:
    """The node names registered with the local epmd (none if epmd is not running)."""
    port = int(os.environ.get("ERL_EPMD_PORT", "4369"))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return []
    try:
        writer.write(b"\x00\x01n")  # NAMES_REQ: 2-byte length, then 'n'
        await writer.drain()
        await reader.readexactly(4)  # epmd's own port
        text = (await reader.read()).decode(errors="replace")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    # Lines look like "name aqtest40123 at port 40124".
    return [line.split()[1] for line in text.splitlines() if line.startswith("name ")]


class NodeExited(RuntimeError):
    """The node's VM exited while we waited for it to accept AMQP connections."""


class RabbitServer:
    """A RabbitMQ node on 127.0.0.1 whose data, logs and config live in ``directory``.

    ``start()`` runs it in the foreground as a child of the test, so ``kill()`` can
    SIGKILL the Erlang VM itself; ``start()`` again brings back the same node (name,
    ports, data directory), so durable queues and persistent messages survive.

    ``extra_config`` is appended to the node's rabbitmq.conf (new-style ``key = value``
    lines: an SSL listener, say); ``ctl()`` runs rabbitmqctl against the node.
    """

    def __init__(self, directory: Path, extra_config: str = "") -> None:
        self.directory = directory
        self.extra_config = extra_config
        self.port, self.dist_port = _free_ports(2)
        self.name = f"aqtest{self.port}"
        # `localhost`, not the machine's hostname: it resolves to loopback everywhere.
        self.node = f"{self.name}@localhost"
        self.process: asyncio.subprocess.Process | None = None
        self.start_seconds: float | None = None  # how long the last start() took

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def log_file(self) -> Path:
        return self.directory / "log" / f"{self.node}.log"

    @property
    def output_file(self) -> Path:
        """The VM's stdout and stderr: errors from before logging is set up land here."""
        return self.directory / "node.out"

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in (self.log_file, self.output_file):
            with contextlib.suppress(FileNotFoundError):
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail))
        return "\n".join(parts) or f"(the node wrote no log under {self.directory})"

    def _environment(self) -> dict[str, str]:
        inherited = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("RABBITMQ_") and key != "NOTIFY_SOCKET"
        }
        here = self.directory
        return inherited | {
            "HOME": str(here),  # the .erlang.cookie goes here, not into the user's home
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(here / "mnesia"),
            "RABBITMQ_LOG_BASE": str(here / "log"),
            "RABBITMQ_CONFIG_FILE": str(here / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(here / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(here / "rabbitmq-env.conf"),  # not /etc/rabbitmq's
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(here / "enabled_plugins"),
            # Makes the script `exec erl` (which execs erlexec, which execs beam.smp)
            # rather than run it in the background behind a signal-forwarding shell: so
            # our child's PID is the VM's. It would also drop -noinput, so we restore it.
            "RABBITMQ_ALLOW_INPUT": "true",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                "-noinput -kernel inet_dist_use_interface {127,0,0,1}"
            ),
            # Only matters if no epmd runs yet and this node has to start one.
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_CRASH_DUMP": str(here / "erl_crash.dump"),
        }

    def _prepare(self) -> IO[bytes]:
        """Write the config files (every start: they are ours) and open the output file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "rabbitmq.conf").write_text(
            "loopback_users.guest = true\nlog.file.level = info\nlog.console = false\n"
            + (f"{self.extra_config.rstrip()}\n" if self.extra_config.strip() else "")
        )
        (self.directory / "rabbitmq-env.conf").write_text("")
        (self.directory / "enabled_plugins").write_text("[].\n")
        return self.output_file.open("ab")

    async def _spawn(self) -> asyncio.subprocess.Process:
        script = _server_script()
        if script is None:
            pytest.fail("rabbitmq-server is not installed: run `make test`, which installs it")
        with self._prepare() as output:
            return await asyncio.create_subprocess_exec(
                script,
                cwd=self.directory,
                env=self._environment(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C meant for pytest does not reach it
                preexec_fn=_die_with_parent,
            )

    async def ctl(self, *args: str) -> str:
        """Run ``rabbitmqctl -n NODE ARGS...`` against this node and return its output.

        It runs with the node's environment, so it finds the Erlang cookie the node
        wrote to its HOME (our directory) and never talks to the shared node.

        Raises:
            RuntimeError: rabbitmqctl failed or took longer than ``CTL_TIMEOUT``.
        """
        script = _ctl_script()
        if script is None:
            pytest.fail("rabbitmqctl is not installed: run `make test`, which installs it")
        environment = self._environment() | {
            # The CLI's own Erlang node listens too: keep it on loopback like the server.
            "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        command = [script, "-n", self.node, *args]
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=self.directory,
            env=environment,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            async with asyncio.timeout(CTL_TIMEOUT):
                output, _ = await process.communicate()
        except BaseException as error:  # timed out or cancelled: leave no CLI VM behind
            # The script execs erl, which execs the VM: this PID is the CLI's VM.
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            if isinstance(error, TimeoutError):
                raise RuntimeError(f"{' '.join(command)} took over {CTL_TIMEOUT:.0f}s") from None
            raise
        text = output.decode(errors="replace")
        if process.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} exited with status {process.returncode}:\n{text}"
            )
        return text

    async def _name_is_free(self) -> bool:
        """epmd drops a killed node's name when it sees the socket close; a restart
        before that would fail with "node name already in use"."""
        return self.name not in await _epmd_names()

    async def _accepts_amqp(self) -> bool:
        assert self.process is not None
        if self.process.returncode is not None:
            raise NodeExited(f"exited with status {self.process.returncode}")
        # A bare TCP probe first: aiormq logs a warning for every refused connection.
        if not await _accepts_tcp(self.port):
            return False
        try:
            connection = await aio_pika.connect(self.url, timeout=5)
        except Exception:  # reset, or not ready to open a connection yet
            return False
        await connection.close()
        return True

    async def start(self) -> None:
        """Start the node and return once it accepts an AMQP connection."""
        if self.process is not None and self.process.returncode is None:
            raise RuntimeError(f"{self.node} is already running")
        began = time.monotonic()
        self.process = None
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await _until(self._name_is_free)
                self.process = await self._spawn()
                await _until(self._accepts_amqp)
        except TimeoutError:
            await self.kill()
            waited_for = "to accept AMQP" if self.process else "epmd to free its name"
            raise RuntimeError(
                f"RabbitMQ node {self.node}: waited {START_TIMEOUT:.0f}s for {waited_for}\n"
                + self.log_tail()
            ) from None
        except NodeExited as error:
            raise RuntimeError(f"RabbitMQ node {self.node} {error}\n{self.log_tail()}") from None
        except BaseException:  # cancelled (a test timeout, say): leave no node behind
            await self.kill()
            raise
        if (name := _program(self.process.pid)) not in ("beam.smp", None):
            await self.kill()  # kill() would only have killed the shell in front of the VM
            raise RuntimeError(f"the node's PID runs {name!r}, not beam.smp: script changed?")
        self.start_seconds = time.monotonic() - began
        logger.info("%s accepted AMQP after %.1fs", self.node, self.start_seconds)

    async def kill(self) -> None:
        """SIGKILL the Erlang VM: nothing gets flushed that was not already on disk.
        Its port helpers (erl_child_setup, inet_gethost, the disk monitor) exit when
        their pipes to the VM close, and epmd drops its name when its socket closes."""
        await self._signal(signal.SIGKILL)

    async def stop(self) -> None:
        """Stop gracefully: the VM turns SIGTERM into an orderly RabbitMQ shutdown."""
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await self._signal(signal.SIGTERM)
        except TimeoutError:
            await self.kill()
            raise RuntimeError(
                f"{self.node} ignored SIGTERM for {STOP_TIMEOUT:.0f}s; killed it\n"
                + self.log_tail()
            ) from None

    async def _signal(self, signum: signal.Signals) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
        await process.wait()


@pytest.fixture
async def rabbit_server(tmp_path: Path) -> AsyncIterator[RabbitServer]:
    """A started private node, killed after the test."""
    server = RabbitServer(tmp_path / "rabbitmq")
    await server.start()
    try:
        yield server
    finally:
        await server.kill()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Drop a connection at once: with SO_LINGER 0 the kernel sends RST, not FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _stop_reading(writer: asyncio.StreamWriter) -> None:
    """Read no more from this socket: what the peer sends stays in our kernel's buffer,
    and neither its data nor a FIN or RST reaches us."""
    transport = writer.transport
    if isinstance(transport, asyncio.ReadTransport):  # a socket's transport is both
        transport.pause_reading()


class _Link:
    """One client connection through the proxy, and its connection to the target."""

    def __init__(self, client: asyncio.StreamWriter, task: asyncio.Task[None]) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.task = task
        self.copying: asyncio.Future[Any] | None = None  # both directions, once connected
        self.cut = False
        self.frozen = False

    def abort(self) -> None:
        self.cut = True
        _abort(self.client)
        if self.upstream is not None:
            _abort(self.upstream)

    def freeze(self) -> None:
        """Stop reading both sockets and stop copying, leaving both open: what either
        end sends is acknowledged by our kernel and goes no further, and a FIN or RST
        from either end is never seen, let alone passed on."""
        self.frozen = True
        for writer in (self.client, self.upstream):
            if writer is not None:
                _stop_reading(writer)
        if self.copying is not None:
            self.copying.cancel()


class TcpProxy:
    """Forwards connections from 127.0.0.1:``port`` to 127.0.0.1:``target_port``;
    ``cut()`` resets every connection open through it, as a network failure would,
    ``freeze()`` silences them, as a partition would, and ``partition()`` silences
    new ones too."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0  # known after start()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._frozen: set[_Link] = set()  # open, passing nothing, until cut() or close()
        self._partitioned = False  # new connections are frozen too

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def url_for(self, url: str) -> str:
        """``url`` (e.g. ``RabbitServer.url``) with its host and port replaced by ours."""
        parts = urlsplit(url)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@" if credentials else ""
        return urlunsplit(parts._replace(netloc=f"{netloc}127.0.0.1:{self.port}"))

    async def cut(self) -> None:
        """Abort both sides of every open connection, frozen ones included; new
        connections still work."""
        links = list(self._links)
        frozen, self._frozen = self._frozen, set()
        for link in [*links, *frozen]:
            link.abort()
        await asyncio.gather(*(link.task for link in links), return_exceptions=True)

    async def freeze(self) -> None:
        """Pass no more bytes, either way, on every open connection, and close neither
        side of any (no FIN, no RST): a silent partition, which only a timeout at
        either end can notice. New connections still work."""
        links = list(self._links)
        for link in links:
            link.freeze()
            self._frozen.add(link)
        await asyncio.gather(*(link.task for link in links), return_exceptions=True)

    async def partition(self) -> None:
        """:meth:`freeze`, and freeze every connection made later too, before it
        reaches the target: whoever is behind the proxy is cut off altogether."""
        self._partitioned = True
        await self.freeze()

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        await self.cut()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _serve(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        link = _Link(client, task)
        if self._partitioned:
            link.freeze()
            self._frozen.add(link)
            return
        self._links.add(link)
        try:
            try:
                upstream_reader, upstream = await asyncio.open_connection(
                    "127.0.0.1", self.target_port
                )
            except OSError:
                _abort(client)
                return
            link.upstream = upstream
            if link.cut:  # cut() ran while we were connecting
                _abort(upstream)
                return
            if link.frozen:  # freeze() ran while we were connecting
                _stop_reading(upstream)
                return
            link.copying = asyncio.gather(
                self._pipe(client_reader, upstream, link),
                self._pipe(upstream_reader, client, link),
            )
            try:
                await link.copying
            except asyncio.CancelledError:
                if not link.frozen or task.cancelling():
                    raise  # not freeze() but a cancellation of this task
        finally:
            self._links.discard(link)
            if not link.frozen:  # a frozen link stays open until cut() or close()
                client.close()
                if link.upstream is not None:
                    link.upstream.close()

    @staticmethod
    async def _pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        """Copy one direction; pass on a clean EOF, reset both sides on any error."""
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            if not writer.is_closing() and writer.can_write_eof():
                writer.write_eof()
        except OSError:
            link.abort()
