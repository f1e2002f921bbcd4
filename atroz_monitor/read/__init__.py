"""From the log to state: the bounded reader, the one reducer, the catalog of finished runs and
the one ``load()``.

Imports only ``events`` and ``probe``.
"""
