"""The command-line verbs of ``python -m atroz_monitor``."""
