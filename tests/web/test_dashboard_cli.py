"""``aq dashboard``: what it refuses at start-up, each with a message that says
what to change (the load test runs it for real)."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from aq.cli import app

runner = CliRunner()
APP = "tests.apps.quiet:broker"


@pytest.fixture(autouse=True)
def _no_auth_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AQ_DASHBOARD_TOKEN", raising=False)
    monkeypatch.delenv("AQ_DASHBOARD_BASIC_AUTH", raising=False)


def test_beyond_loopback_without_authentication_it_refuses_to_start() -> None:
    result = runner.invoke(app, ["dashboard", APP, "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "--host 0.0.0.0: the dashboard would answer beyond this machine" in result.output
    assert "set AQ_DASHBOARD_TOKEN" in result.output


def test_a_short_token_is_refused_without_being_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AQ_DASHBOARD_TOKEN", "hunter2-short")
    result = runner.invoke(app, ["dashboard", APP, "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "AQ_DASHBOARD_TOKEN must be at least 16 characters long" in result.output
    assert "hunter2" not in result.output


def test_basic_credentials_without_a_colon_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AQ_DASHBOARD_BASIC_AUTH", "just-a-password")
    result = runner.invoke(app, ["dashboard", APP])
    assert result.exit_code == 2
    assert "AQ_DASHBOARD_BASIC_AUTH must be user:password" in result.output
    assert "just-a-password" not in result.output


def test_a_taken_port_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["dashboard", APP, "--port", str(port)])
    assert result.exit_code == 2
    assert f"--port {port}: port {port} on 127.0.0.1 is in use by another process" in (
        result.output
    )
