"""An app whose worker exits with status 4, as a failing ``@broker.on_startup`` hook
makes it, while the file that ``AQ_TEST_EXIT_FILE`` names exists."""

from __future__ import annotations

import os

import aq

if os.path.exists(os.environ.get("AQ_TEST_EXIT_FILE", "")):
    raise SystemExit(4)  # EXIT_STARTUP_FAILED

broker = aq.Broker("memory://")
