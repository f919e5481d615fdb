"""``python -m engine`` runs the ``smartconnector`` command."""

from engine.cli import main

main()
