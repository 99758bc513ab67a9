"""The public surface: a curated, sorted, complete ``aq.__all__``."""

from __future__ import annotations

import inspect
import subprocess
import sys

import aq
import aq.errors


def test_all_is_sorted() -> None:
    assert aq.__all__ == sorted(aq.__all__)


def test_all_names_exist_and_every_public_class_or_function_is_listed() -> None:
    public = {
        name
        for name, value in vars(aq).items()
        if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
    }
    assert public <= set(aq.__all__)
    assert set(aq.__all__) - public == {"Scheduler", "Worker"}  # imported on first use
    assert all(getattr(aq, name) is not None for name in aq.__all__)


def test_importing_aq_does_not_import_the_worker() -> None:
    code = "import sys, aq; print(sorted(m for m in sys.modules if m.startswith('aq.worker')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert aq.Worker.__module__ == "aq.worker.worker"


def test_every_error_derives_from_aq_error() -> None:
    errors = [getattr(aq.errors, name) for name in aq.errors.__all__]
    assert all(issubclass(e, aq.AQError) for e in errors)
    assert set(aq.errors.__all__) <= set(aq.__all__)


def test_every_public_name_has_a_docstring() -> None:
    missing = [name for name in aq.__all__ if not inspect.getdoc(getattr(aq, name))]
    assert missing == []
