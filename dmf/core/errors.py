"""Errors that are the user's to fix (a key, a path, a device count): run.py prints them as one message,
without a traceback, and exits with status 2."""


class UsageError(Exception):
    pass
