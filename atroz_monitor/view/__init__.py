"""Pure functions of state: the snapshot, history and trends, analysis, alert rules and their
one merge, comparisons, charts, suggestions.

Imports only earlier stages (``read``, ``probe``, ``events``); nothing here does I/O.
"""
