"""The live store: follows a directory of logs, keeps each run's state and the catalog, caches
views. The embedded server, the API and ``Monitor.snapshot()`` read it through its public
methods.
"""
