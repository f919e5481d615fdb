"""Which modules define the commands, in the order ``--help`` lists them."""


def register_commands() -> None:
    """Import each command module once; Typer lists commands in the order they register."""
    from engine.cli import _runs, _fleet, _kit, _servers  # noqa: F401, I001 - the order is the help's
