"""Bytes out: the HTTP API and server, the page and its static files, the text, markdown and
HTML report, the export formats and the notebook API (``load``).
"""
