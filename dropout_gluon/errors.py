"""The one class of error a person can fix: the command line prints its message as one line, exit status 2."""


class UserError(ValueError):
    """Bad input, missing or damaged data, an output that cannot be written: what was wrong and what to do. A
    ValueError, the configuration's contract; what the command line does not know as one is a bug (a traceback)."""
