"""``aq worker --reload``: a worker that restarts with the new code when it is edited.

For development. The supervisor watches the application's source with
watchfiles (``pip install 'aq-tasks[reload]'``): by default the tree the app
was imported from (the directory holding its top-level package or module),
or the ``--reload-dir`` directories instead; ``*.py`` files only, and not in
``.venv``, ``__pycache__``, ``.git`` and the like (watchfiles'
``PythonFilter``). Changes are debounced: a burst of saves is one reload.

On a change each child (the worker, then the isolation worker) is renewed
(:meth:`~aq.worker.supervisor.Supervisor.renew`). The worker without a gap: a
new child starts with the new code, and only once it consumes does the old
one stop gracefully, letting its running tasks finish within
``--shutdown-timeout`` (those still running then go back to the queue). If
the new child fails before it is ready (the edited code does not import: its
traceback is on the terminal; or a start-up hook fails), ``reload.failed``
says so and the old child keeps serving the code it had; the next change
tries again. The isolation worker runs one message at a time, so the old one
stops first and the new one starts after it (its queue waits meanwhile). The
supervisor itself keeps the app it loaded at start: it only reads the
broker's URL and queues from it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from aq.errors import ConfigurationError
from aq.logs import event
from aq.worker.supervisor import ISOLATION_SLOT, Supervisor

__all__ = ["Reloader", "check_available", "source_roots"]

log = logging.getLogger("aq.supervisor")

_KEPT = (
    "the new worker did not start (its error is above); the old one keeps serving "
    "the code it had, and the next change tries again"
)
_RETRIED = (
    "the new isolation worker did not start (its error is above); it is started "
    "again after a back-off, and the next change tries again"
)


def check_available() -> None:
    """Raises:
    aq.ConfigurationError: watchfiles is not installed.
    """
    try:
        import watchfiles  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "--reload needs watchfiles: pip install 'aq-tasks[reload]'"
        ) from None


def source_roots(app_spec: str) -> list[Path]:
    """The directories holding the top-level package or module of ``app_spec``
    (``MODULE:ATTRIBUTE``, already imported)."""
    top = app_spec.partition(":")[0].partition(".")[0]
    module = sys.modules.get(top)
    file = getattr(module, "__file__", None)
    if file is not None:
        path = Path(file).resolve()
        return [path.parent.parent if path.name == "__init__.py" else path.parent]
    # A namespace package: each of its directories' parents.
    return sorted({Path(p).resolve().parent for p in getattr(module, "__path__", ())})


class Reloader:
    """Renews the supervisor's children when files under ``roots`` change (a companion)."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = list(roots)

    async def __call__(self, supervisor: Supervisor) -> None:
        """Watch until the supervisor stops."""
        from watchfiles import PythonFilter, awatch

        changed = asyncio.Event()
        renewing = asyncio.create_task(self._renew_on(changed, supervisor))
        event(log, logging.INFO, "reload.watching", roots=",".join(map(str, self.roots)))
        try:
            async for changes in awatch(
                *self.roots, watch_filter=PythonFilter(), stop_event=supervisor.stopping
            ):
                event(log, logging.INFO, "reload.changed", files=_shown(p for _, p in changes))
                changed.set()
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)

    async def _renew_on(self, changed: asyncio.Event, supervisor: Supervisor) -> None:
        while True:
            await changed.wait()
            changed.clear()  # changes from now on make one more reload after this one
            await self._reload(supervisor)

    async def _reload(self, supervisor: Supervisor) -> None:
        slots = [s for s in supervisor.slots if s not in supervisor.retired]
        slots.sort(key=lambda s: s == ISOLATION_SLOT)  # the workers first
        for slot in slots:
            try:
                code = await supervisor.renew(slot)
            except OSError as exc:  # out of file descriptors or memory
                event(log, logging.ERROR, "reload.failed", slot=slot, error=exc, note=_KEPT)
                return
            if code is not None:
                note = _RETRIED if slot == ISOLATION_SLOT else _KEPT
                event(log, logging.ERROR, "reload.failed", slot=slot, code=code, note=note)
                return
        event(log, logging.INFO, "reload.done", slots=",".join(map(str, slots)))


def _shown(paths: Iterable[str]) -> str:
    here = os.getcwd()
    shown = []
    for path in sorted(set(paths)):
        relative = os.path.relpath(path, here)
        shown.append(path if relative.startswith("..") else relative)
    return ",".join(shown)
