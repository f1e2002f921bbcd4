"""``python -m atroz_monitor``: see ``cli.py``."""

from .cli import main

raise SystemExit(main())
