"""``python -m atroz_monitor``: see ``commands/cli.py``."""

from .commands.cli import main

raise SystemExit(main())
