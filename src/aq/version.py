"""The version of aq, for what reports it (worker stats, events, the dashboard)."""

__version__ = "0.1.0"
