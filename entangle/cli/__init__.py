"""entangle's command-line front end (installed as the ``entangle.cli`` package)."""
