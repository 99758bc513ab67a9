"""The HTML the dashboard serves: one shell for every page, the login page and
the refusal a dashboard without authentication gives a non-loopback request.

The shell carries the navigation and the page's settings in ``data-``
attributes of ``<body>`` (base path, page, anti-forgery token, read-only);
``static/aq.js`` draws the page's content from the JSON API. Everything
interpolated is escaped, and the pages load only the dashboard's own files:
nothing comes from another host, so the dashboard works without internet.
"""

from __future__ import annotations

from html import escape
from typing import Final

__all__ = ["PAGES", "login_page", "page", "refusal_page"]

#: (path, page name) of every page.
PAGES: Final = (
    ("/", "overview"),
    ("/workers", "workers"),
    ("/tasks", "tasks"),
    ("/tasks/{task_id:str}", "task"),
    ("/queues", "queues"),
    ("/dead", "dead"),
    ("/schedules", "schedules"),
)
_NAV: Final = (
    ("/", "overview", "Overview"),
    ("/workers", "workers", "Workers"),
    ("/tasks", "tasks", "Tasks"),
    ("/queues", "queues", "Queues"),
    ("/dead", "dead", "Dead letters"),
    ("/schedules", "schedules", "Schedules"),
)
_TITLES: Final = {name: label for _, name, label in _NAV} | {"task": "Task"}


def _head(base: str, title: str) -> str:
    return (
        "<!doctype html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>{escape(title)}</title>\n"
        f"<link rel='icon' href='{escape(base)}/static/favicon.svg' type='image/svg+xml'>\n"
        f"<link rel='stylesheet' href='{escape(base)}/static/aq.css'>\n"
        f"<script src='{escape(base)}/static/theme.js'></script>\n"
        "</head>\n"
    )


def page(
    name: str,
    *,
    base: str,
    title: str,
    csrf: str,
    read_only: bool,
    arg: str = "",
    signed_in: bool = False,
) -> str:
    """The shell of page ``name`` (``arg``: the task id of a task's page)."""
    heading = _TITLES[name]
    links = "".join(
        f"<a href='{escape(base)}{path}'{' aria-current=page' if key == name else ''}>{label}</a>"
        for path, key, label in _NAV
    )
    data = (
        f"data-base='{escape(base)}' data-page='{escape(name)}' data-csrf='{escape(csrf)}' "
        f"data-read-only='{'1' if read_only else '0'}' data-arg='{escape(arg)}'"
    )
    badge = "<span class='badge'>read-only</span>" if read_only else ""
    return (
        _head(base, f"{heading} · aq")
        + f"<body {data}>\n<header>\n<div class='brand'><span class='logo'>aq</span>"
        f"<span class='broker' title='broker'>{escape(title)}</span>{badge}</div>\n"
        f"<nav>{links}</nav>\n<div class='tools'>"
        "<span id='live' class='live' title='live updates'>connecting</span>"
        "<button id='theme' type='button' title='light or dark'>◐</button>"
        + (
            f"<form method='post' action='{escape(base)}/logout'>"
            "<button type='submit' title='sign out'>Sign out</button></form>"
            if signed_in
            else ""
        )
        + "</div>\n"
        "</header>\n"
        "<div id='problem' class='problem' hidden></div>\n"
        f"<main id='main'><h1>{escape(heading)}</h1><div id='content'></div></main>\n"
        "<div id='toast' role='status' aria-live='polite'></div>\n"
        "<dialog id='confirm'><form method='dialog'><p id='confirm-text'></p>"
        "<menu><button value='cancel' type='submit'>Cancel</button>"
        "<button value='ok' type='submit' class='danger' id='confirm-ok'>Confirm</button>"
        "</menu></form></dialog>\n"
        f"<script src='{escape(base)}/static/aq.js'></script>\n</body>\n</html>\n"
    )


def login_page(base: str, *, error: str) -> str:
    """The form that asks for the dashboard's token."""
    shown = f"<p class='error'>{escape(error)}</p>" if error else ""
    return (
        _head(base, "Sign in · aq")
        + "<body class='login'>\n<main class='card'>\n<h1><span class='logo'>aq</span> "
        "dashboard</h1>\n"
        f"{shown}<form method='post' action='{escape(base)}/login'>\n"
        "<label>Token <input type='password' name='token' autocomplete='current-password' "
        "autofocus required></label>\n<button type='submit'>Sign in</button>\n</form>\n"
        "<p class='hint'>The token is the value of AQ_DASHBOARD_TOKEN where the dashboard "
        "runs.</p>\n</main>\n</body>\n</html>\n"
    )


def refusal_page() -> str:
    """What a request from outside loopback gets from a dashboard with no authentication."""
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<title>aq dashboard: authentication required</title></head><body>\n"
        "<h1>This dashboard has no authentication</h1>\n"
        "<p>It answers only on loopback (127.0.0.1, ::1) until it has some. Set "
        "AQ_DASHBOARD_TOKEN (a secret of at least 16 characters) or "
        "AQ_DASHBOARD_BASIC_AUTH=user:password where it runs, or pass "
        "auth=aq.web.Auth(...) to aq.dashboard(). If your application already checks "
        "who asks before this mount, pass allow_anonymous=True.</p>\n</body></html>\n"
    )
