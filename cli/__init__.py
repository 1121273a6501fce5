"""entangle's command-line front end (installed as the ``entangle_cli`` package)."""
