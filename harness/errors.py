"""The one error type a user can cause; the CLI prints its message as a single line."""


class HarnessError(Exception):
    """A problem with the user's input or environment, stated in one line that names the bad value."""
