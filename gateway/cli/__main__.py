"""``python -m gateway.cli``: the same as the ``greenlist`` command."""

from gateway.cli import app

app()
