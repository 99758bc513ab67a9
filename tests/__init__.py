"""aq test suite."""
