"""What ``aq worker --reload`` watches, and its refusal without watchfiles."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import aq
from aq.worker.reload import check_available, source_roots

ROOT = Path(__file__).resolve().parent.parent


def test_a_package_app_watches_the_directory_holding_its_top_level_package() -> None:
    import tests.apps.basic  # noqa: F401

    assert source_roots("tests.apps.basic:broker") == [ROOT]


def test_a_module_app_watches_the_directory_holding_the_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "solo_app_for_reload.py").write_text('import aq\nbroker = aq.Broker("memory://")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    import solo_app_for_reload  # type: ignore[import-not-found]  # noqa: F401

    try:
        assert source_roots("solo_app_for_reload:broker") == [tmp_path.resolve()]
    finally:
        del sys.modules["solo_app_for_reload"]


def test_reload_without_watchfiles_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "watchfiles", None)  # import watchfiles: ImportError
    with pytest.raises(aq.ConfigurationError, match=r"pip install 'aq-tasks\[reload\]'"):
        check_available()
