"""Errors the command line reports as one line with exit status 2."""


class UsageError(ValueError):
    """Bad input: the message names the argument and the rule it breaks."""
