"""``python -m atroz_monitor``: see ``cli.py``."""

from .commands.cli import main

raise SystemExit(main())
