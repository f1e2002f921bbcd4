"""Writes the log: phases, runs and the monitor, the sampler, log capture, sinks, redaction,
notifications, the OTLP push and acknowledgements.

The live monitor closes a loop: it reads its own history (``read``), evaluates alert rules
(``view``) and answers ``snapshot()`` from the ``store``.
"""
