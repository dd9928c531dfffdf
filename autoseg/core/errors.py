"""The one error type a user can act on."""


class AutosegError(Exception):
    """An error a user can act on: the message names the file or case and the fix."""
