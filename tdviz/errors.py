"""The one exception type for errors a user can cause; the CLI prints its message and exits non-zero."""


class TdvizError(ValueError):
    """A user-facing error: its message is one sentence naming the input and the fix."""
