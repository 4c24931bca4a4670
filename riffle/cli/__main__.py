"""``python -m riffle.cli``: the ``riffle`` command."""

from riffle.cli import app

app()
