"""Errors that are the user's to fix (a key, a path, a device count): run.py prints them as one message,
without a traceback, and exits with status 2."""


class UsageError(Exception):
    pass


class ConfigError(UsageError, ValueError):
    """A config value (or a combination) that cannot work."""


class MissingFileError(UsageError, FileNotFoundError):
    """A file the user named (ckpt=, statistics, ...) does not exist."""


class ResultExistsError(UsageError, FileExistsError):
    """A finished result made with other settings is in the way: never replaced without eval.overwrite=true."""
