"""Runnable examples of aq; ``examples.fastapi_app`` is imported by the tests."""
