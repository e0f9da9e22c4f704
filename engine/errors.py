"""Errors every CLI verb reports the same way: one line on stderr, exit status 2."""


class UsageError(Exception):
    """Bad usage or configuration: reported as one line, exit status 2."""
