"""``python -m aq``: the same as the ``aq`` command."""

from aq.cli import main

main()
